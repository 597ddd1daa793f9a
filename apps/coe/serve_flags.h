// `coe serve`'s flags: what the command line sets, and the options that set it
// (cmd_serve.cc turns them into ServerOptions and runs the server).
#ifndef COE_APPS_SERVE_FLAGS_H_
#define COE_APPS_SERVE_FLAGS_H_

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#ifdef COE_HAVE_SERVER
#include "coe/server.h"
#endif

namespace coe::app {

struct ServeFlags {
  std::string cascade, models, host = "127.0.0.1", name;
  int port = 8000, threads = 0, max_inflight = 64;
  int max_batch = 64, batch_workers = 2, max_connections = 4096, io_threads = 0, max_io_wait_ms = 0;
  int64_t max_queue_delay_us = 0, queue_timeout_ms = 1000;
  int grpc_port = -1;  // -1: no gRPC front end
  int shutdown_grace_ms = 5000;
  double max_body_mb = 32, cache_mb = 0;
  std::string api_key_env;  // the variable holding the front door's key ("": no key)
  bool json_log = false, quiet = false;
  std::string log;  // the request log ("": none)
  double log_max_mb = 100;
  int log_keep = 5;
  bool log_redact = false;
#ifdef COE_HAVE_SERVER
  ShadowOptions shadow;  // --shadow and its options
#endif
};

// Adds every flag of `coe serve` to `serve`, bound to `f`.
void AddServeFlags(CLI::App* serve, ServeFlags* f);

}  // namespace coe::app

#endif  // COE_APPS_SERVE_FLAGS_H_
