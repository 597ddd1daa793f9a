// `coe serve`'s flags (serve_flags.h).
#include "serve_flags.h"

namespace coe::app {

namespace {

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

void AddServeFlags(CLI::App* serve, ServeFlags* f) {
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
}

}  // namespace coe::app
