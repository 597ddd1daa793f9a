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

#ifdef COE_HAVE_SERVER
#include "coe/grpc.h"
#include "coe/server.h"
#endif

namespace coe::app {

namespace {

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

#ifdef COE_HAVE_SERVER
// --shadow and its options (coe/server.h, "Shadow verification").
void AddShadowFlags(CLI::App* serve, ShadowOptions* s) {
  serve
      ->add_option("--shadow", s->share,
                   "shadow verification: this share of the requests that exit before the last tier (chosen by a "
                   "hash of their id, else of their input: reproducible) also run on the last tier alone, after "
                   "their reply, their cost counted apart; their agreement per tier is compared with the cascade "
                   "file's calibrated_agreement: GET /coe/plan-health, coe_shadow_* in /metrics, an alarm line "
                   "(0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  serve->add_option("--shadow-window", s->window, "shadow: the latest shadowed exits judged per tier")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  serve->add_option("--shadow-confidence", s->confidence, "shadow: the Clopper-Pearson interval's confidence")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 0.999999));
  serve
      ->add_option("--shadow-margin", s->margin,
                   "shadow: the alarm rises when the interval's upper bound is below the planned agreement minus this")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.999999));
  serve->add_option("--shadow-min-samples", s->min_samples, "shadow: no alarm on a window with fewer shadowed exits")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000000));
  serve
      ->add_option("--shadow-queue", s->max_queued,
                   "shadow: shadow runs waiting or running at most; a chosen request beyond is skipped (counted)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  serve->add_option("--shadow-workers", s->workers, "shadow: shadow runs at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
}
#endif

}  // namespace

void AddServeCommands(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* serve = app.add_subcommand(
      "serve",
      "serve a cascade, and each of its members, over the Open Inference Protocol (KServe v2) REST API (and gRPC "
      "with --grpc-port); a cascade of chat models also over the OpenAI chat-completions API (POST "
      "/v1/chat/completions, GET /v1/models)");
  serve->add_option("--cascade", f->cascade, "cascade (TOML)")->required();
  serve->add_option("--models", f->models, "model catalogue (TOML)")->required();
  serve->add_option("--host", f->host, "address to listen on")->capture_default_str();
  serve->add_option("--port,--http_port", f->port, "port (0: any free port, printed at start; KServe's --http_port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  serve
      ->add_option("--grpc-port,--grpc_port", f->grpc_port,
                   "also serve the Open Inference Protocol over gRPC on this port (0: any free port, printed at "
                   "start; default: off; KServe's --grpc_port)")
      ->check(CLI::Range(0, 65535));
  serve->add_option(
      "--name,--model_name", f->name,
      "the cascade's model name (default: the cascade file's `name` key, else coe; KServe's --model_name)");
  serve->add_option("--threads", f->threads, "engine worker threads per model (default: the cores)")
      ->check(CLI::NonNegativeNumber);
  serve->add_option("--max-inflight", f->max_inflight, "infer requests running at once; more get 503")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  serve->add_option("--max-body-mb", f->max_body_mb, "largest request body in MiB; larger get 413")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 4096.0));
  serve
      ->add_option("--max-batch", f->max_batch,
                   "dynamic batching: examples of queued requests run together (1: off, each request alone)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  serve
      ->add_option("--max-queue-delay-us", f->max_queue_delay_us,
                   "dynamic batching: how long a request waits for others to share its run")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{10000000}));
  serve
      ->add_option("--queue-timeout-ms", f->queue_timeout_ms,
                   "a request that cannot start within this gets 503 with Retry-After at once (0: no limit)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{3600000}));
  serve->add_option("--batch-workers", f->batch_workers, "batched runs at once per model")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  serve->add_option("--max-connections", f->max_connections, "open connections; more get 503 and are closed")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  serve->add_option("--io-threads", f->io_threads, "HTTP I/O threads (default: the cores, at most 4)")
      ->check(CLI::NonNegativeNumber);
  serve
      ->add_option("--max-io-wait-ms", f->max_io_wait_ms,
                   "load shedding for open traffic: an infer request that waited longer than this for the I/O "
                   "threads gets 503 at once (0: never; 20 suits public traffic)")
      ->capture_default_str()
      ->check(CLI::Range(0, 60000));
  serve
      ->add_option("--shutdown-grace-ms", f->shutdown_grace_ms,
                   "on SIGTERM/SIGINT: how long requests in flight may still finish; those left are then "
                   "cancelled (503, their upstream calls aborted) and coe exits. (SIGHUP, or POST /coe/reload: "
                   "load --cascade and --models again and swap them in without downtime)")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600000));
  serve
      ->add_option("--api-key-env", f->api_key_env,
                   "the model routes (/v1/*: chat, models; /v2/models/*: metadata, ready, infer) require "
                   "'Authorization: Bearer KEY', KEY the value of this environment variable (unset or empty: coe "
                   "refuses to start; compared in constant time; never logged); without it: 401. Health "
                   "(/v2/health/*), /v2 and /metrics stay open. Not with --grpc-port (gRPC has no key check)")
      ->type_name("NAME");
  serve
      ->add_option("--cache-mb", f->cache_mb,
                   "exact-request response cache of /v1/chat/completions, in MiB (0: off): a request with an "
                   "integer seed, or at temperature 0 (or none, its members' catalogue temperature 0), repeated "
                   "exactly (the same JSON, streamed or not) is answered from it: no upstream call, cost 0, "
                   "\"cached\": true")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1048576.0));
  serve
      ->add_option("--log", f->log,
                   "request log: a JSON line per answered example (id, model, its input as the members saw it, the "
                   "answer, exit tier, each reached member's answer, cost, ms, degraded; tensors as a hash, their "
                   "bytes in FILE.tensors/<hash>.bin), for coe record --data FILE. Off without it; a file that "
                   "cannot be opened stops coe from starting")
      ->type_name("FILE");
  serve->add_option("--log-max-mb", f->log_max_mb, "request log: rotate FILE to FILE.1 before it passes this size")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 1048576.0));
  serve->add_option("--log-keep", f->log_keep, "request log: rotated files kept (FILE.1 .. FILE.K)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  serve->add_flag("--log-redact", f->log_redact,
                  "request log: ids and answers only, never inputs (no text, no tensor bytes); such a log cannot "
                  "be recorded on");
#ifdef COE_HAVE_SERVER
  AddShadowFlags(serve, &f->shadow);
#endif
  serve->add_flag("--json-log", f->json_log, "access log as JSON lines on stderr");
  serve->add_flag("--quiet", f->quiet, "no access log");
  serve->callback([f]() { throw CLI::RuntimeError(RunServe(*f)); });
}

}  // namespace coe::app
