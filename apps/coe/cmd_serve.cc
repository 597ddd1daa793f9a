// `coe serve`: a cascade (and each of its members) over the Open Inference Protocol.
#include <malloc.h>
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include "commands.h"
#include "common.h"
#include "serve_flags.h"

#ifdef COE_HAVE_SERVER
#include "coe/grpc.h"
#include "coe/server.h"
#endif

namespace coe::app {

namespace {

#ifdef COE_HAVE_SERVER
// The front door's key, from the variable --api-key-env names ("" without the flag).
// Refused: a variable unset or empty (a server meant to be guarded never starts open),
// and gRPC beside it (its calls carry no key check).
StatusOr<std::string> FrontDoorKey(const ServeFlags& f) {
  if (f.api_key_env.empty()) return std::string();
  const char* v = std::getenv(f.api_key_env.c_str());
  if (!v || !*v)
    return FailedPreconditionError("--api-key-env names the environment variable " + f.api_key_env +
                                   ", which is not set or empty: put the front door's key in it");
  if (f.grpc_port >= 0)
    return InvalidArgumentError(
        "--api-key-env guards the HTTP routes only, and gRPC calls carry no key check: leave out --grpc-port");
  return std::string(v);
}
#endif

int RunServe(const ServeFlags& f) {
  KeepModelBuffers();
  // But blocks of 4 MiB and more are mapped on their own, so that a request's large
  // ones (its body, message, record) go back to the system when freed: in the heap
  // they stayed resident at the top of each thread's arena (KeepModelBuffers' trim
  // threshold), 1.3 GB after 16 chat requests of 8 MiB. A model's buffers below 4 MiB
  // (the zoo's, at the engine's chunk of 16 examples) stay in the heap; the server
  // gives the free pages of smaller large requests back itself (malloc_trim, server.cc).
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  const char* cmd = "serve";
#ifndef COE_HAVE_SERVER
  (void)f;
  return Fail(cmd, FailedPreconditionError("this coe was built without the server (COE_WITH_SERVER=OFF)"));
#else
  // SIGINT/SIGTERM/SIGHUP are blocked in every thread (threads inherit the mask) and
  // taken by sigwait below: a clean stop, or a reload on this thread, not a handler
  // racing the workers.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto key = FrontDoorKey(f);
  if (!key.ok()) return Fail(cmd, key.status());
  auto spec = ReadCascade(f.cascade);
  if (!spec.ok()) return Fail(cmd, spec.status());
  auto cat = ReadCatalogue(f.models);
  if (!cat.ok()) return Fail(cmd, cat.status());
  WarnAboutCascade(*spec, *cat, false);
  EngineOptions eo;
  eo.threads = f.threads;
  ServerOptions so;
  so.name = f.name;
  so.max_inflight = f.max_inflight;
  so.max_batch = f.max_batch;
  so.max_queue_delay_us = f.max_queue_delay_us;
  so.queue_timeout_ms = f.queue_timeout_ms;
  so.batch_workers = f.batch_workers;
  so.max_connections = f.max_connections;
  so.io_threads = f.io_threads;
  so.max_io_wait_ms = f.max_io_wait_ms;
  so.max_body_bytes = static_cast<size_t>(f.max_body_mb * (1 << 20));
  so.access_log = f.quiet ? AccessLog::kOff : f.json_log ? AccessLog::kJson : AccessLog::kText;
  so.api_key = std::move(*key);
  so.cache_bytes = static_cast<size_t>(f.cache_mb * (1 << 20));
  so.request_log.path = f.log;
  so.request_log.max_bytes = static_cast<uint64_t>(f.log_max_mb * (1 << 20));
  so.request_log.keep = f.log_keep;
  so.request_log.redact = f.log_redact;
  so.shadow = f.shadow;  // checked by Server::Create (naming the flag)
  // SIGHUP and POST /coe/reload read both files again.
  so.load = [cascade = f.cascade, models = f.models]() -> StatusOr<CascadeSource> {
    CascadeSource source;
    source.origin = "cascade " + cascade + ", catalogue " + models;
    COE_ASSIGN_OR_RETURN(source.spec, ReadCascade(cascade));
    COE_ASSIGN_OR_RETURN(source.catalogue, ReadCatalogue(models));
    return source;
  };
  auto server = Server::Create(*spec, *cat, eo, so);
  if (!server.ok()) return Fail(cmd, server.status());
  Status started = (*server)->Start(f.host, f.port);
  if (!started.ok()) return Fail(cmd, started);
  // Without the gRPC module (COE_WITH_GRPC=OFF, or gRPC not found) Start says so.
  std::unique_ptr<GrpcFrontend> grpc;
  if (f.grpc_port >= 0) {
    GrpcOptions go;
    go.max_message_bytes = so.max_body_bytes;
    go.max_concurrent_calls = f.max_inflight;
    go.shutdown_grace_s = f.shutdown_grace_ms / 1000 + 2;  // after the server's own cancel (Shutdown)
    auto g = GrpcFrontend::Start(f.host, f.grpc_port, server->get(), go);
    if (!g.ok()) return Fail(cmd, g.status());
    grpc = std::move(*g);
    std::printf("coe serve: gRPC (Open Inference Protocol) on %s:%d\n", f.host.c_str(), grpc->port());
  }
  const std::vector<std::string> names = (*server)->model_names();
  std::string members;
  for (size_t i = 1; i < names.size(); ++i) members += (i > 1 ? ", " : "") + names[i];
  const bool chat = !(*server)->chat_model_names().empty();
  std::printf("coe serve: model '%s'%s on http://%s:%d (%s; /metrics)%s\n", names[0].c_str(),
              members.empty() ? "" : (" and its members " + members).c_str(), f.host.c_str(), (*server)->port(),
              chat ? "OpenAI chat completions at /v1/chat/completions" : "Open Inference Protocol v2",
              f.api_key_env.empty() ? "" : ("; model routes need the key in $" + f.api_key_env).c_str());
  std::fflush(stdout);
  int sig = 0;
  // A reload's outcome is logged by the server (its line names the files and, on
  // failure, why; the old cascade keeps serving).
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) (void)(*server)->Reload();
  std::fprintf(stderr,
               "coe serve: %s: no new connections; finishing requests in flight (cancelling those left after "
               "%d ms)\n",
               sig == SIGINT ? "SIGINT" : "SIGTERM", f.shutdown_grace_ms);
  // gRPC's Stop waits for its calls, which the server's Shutdown cancels at the end of
  // the grace period (they run through Server::Run): both at once.
  std::thread grpc_stop;
  if (grpc) grpc_stop = std::thread([&grpc] { grpc->Stop(); });
  (*server)->Shutdown(f.shutdown_grace_ms);
  if (grpc_stop.joinable()) grpc_stop.join();
  std::fprintf(stderr, "coe serve: stopped\n");
  return 0;
#endif
}

}  // namespace

void AddServeCommands(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* serve = app.add_subcommand(
      "serve",
      "serve a cascade, and each of its members, over the Open Inference Protocol (KServe v2) REST API (and gRPC "
      "with --grpc-port); a cascade of chat models also over the OpenAI chat-completions API (POST "
      "/v1/chat/completions, GET /v1/models)");
  AddServeFlags(serve, f.get());
  serve->callback([f]() { throw CLI::RuntimeError(RunServe(*f)); });
}

}  // namespace coe::app
