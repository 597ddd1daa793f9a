// Replacement without downtime (Server::Reload, POST /coe/reload): a new generation is
// built beside the serving one and swapped in under a mutex; requests hold the
// generation they started on (server_impl.h: Generation), so nothing in flight sees
// the swap.
#include <nlohmann/json.hpp>

#include "server/server_impl.h"

namespace coe {

namespace {

using json = nlohmann::json;

ReloadInfo InfoOf(const Generation& g) {
  ReloadInfo info;
  info.generation = g.number;
  info.loaded_at = g.loaded_at;
  info.model = g.models.front().name;
  for (const ServedModel& m : g.models) info.models.push_back(m.name);
  for (const TierSpec& t : g.models.front().cascade->spec().tiers) info.tiers.push_back(t.members);
  return info;
}

std::string InfoJson(const ReloadInfo& info) {
  json j = {{"generation", info.generation},
            {"loaded_at", info.loaded_at},
            {"model", info.model},
            {"models", info.models},
            {"tiers", info.tiers}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string TiersText(const ReloadInfo& info) {
  std::string out;
  for (const std::vector<std::string>& t : info.tiers) {
    out += out.empty() ? "" : " -> ";
    std::string members;
    for (const std::string& m : t) members += (members.empty() ? "" : ", ") + m;
    out += "[" + members + "]";
  }
  return out;
}

}  // namespace

void Server::Impl::Install(std::unique_ptr<Generation> g) {
  // The deleter hands the last reference's release to the reaper's thread.
  std::shared_ptr<const Generation> next(
      g.release(), [reaper = reaper](const Generation* old) { reaper->Retire(const_cast<Generation*>(old)); });
  std::shared_ptr<const Generation> old;
  {
    std::lock_guard<std::mutex> lock(current_mu);
    old = std::exchange(current, std::move(next));
  }
  // The old generation's replies can no longer be hit (their keys hold its loads):
  // cleared so that they do not hold the cache's memory until evicted.
  if (old && cache) cache->Clear();
}

StatusOr<ReloadInfo> Server::Impl::Reload(const CascadeSource* given) {
  std::lock_guard<std::mutex> lock(reload_mu);
  const uint64_t serving = Current()->number;
  std::string origin = given ? given->origin : "";
  auto fail = [&](const Status& s) -> StatusOr<ReloadInfo> {
    reloads_failed++;
    const std::string why = "reload failed, still serving generation " + std::to_string(serving) + ": " +
                            (origin.empty() ? "" : origin + ": ") + s.message();
    Log("coe serve: " + why);
    return Status(s.code() == StatusCode::kOk ? StatusCode::kInternal : s.code(), why);
  };
  StatusOr<CascadeSource> loaded = CascadeSource{};
  if (!given) {
    if (!options.load)
      return fail(FailedPreconditionError("this server was given no files to reload (ServerOptions::load)"));
    loaded = options.load();
    if (!loaded.ok()) return fail(loaded.status());
    given = &*loaded;
    origin = given->origin;
  }
  StatusOr<std::unique_ptr<Generation>> g = [&]() -> StatusOr<std::unique_ptr<Generation>> {
    COE_ASSIGN_OR_RETURN(
        std::vector<ServedModel> models,
        ServedModelsOf(given->spec, given->catalogue, engine, ServedName(options, given->spec), options.serve_members));
    return Build(std::move(models));
  }();
  if (!g.ok()) return fail(g.status());
  (*g)->number = serving + 1;
  (*g)->origin = origin;
  const ReloadInfo info = InfoOf(**g);
  Install(std::move(*g));
  reloads_ok++;
  Log("coe serve: reloaded" + (origin.empty() ? "" : " " + origin) + ": generation " + std::to_string(info.generation) +
      ", model '" + info.model + "' " + TiersText(info));
  return info;
}

void Server::Impl::ReloadRoute(const http::Request& request, const http::Responder& respond) {
  if (!request.body.empty())
    return respond(ErrorReply(400,
                              "POST /coe/reload takes no body: it loads again the files the server was started with "
                              "(coe serve --cascade and --models)"));
  if (!options.load) return respond(ErrorReply(501, "this server was given no files to reload"));
  // Building a cascade loads models: off the I/O threads.
  OffIo([this, respond] {
    StatusOr<ReloadInfo> info = Reload(nullptr);
    if (!info.ok()) {
      // The request was well formed; the server's files were not: 500, with the reason
      // and the generation still serving.
      json j = {{"error", Bounded(info.status().message())}, {"generation", Current()->number}};
      http::Reply r = JsonReply(j.dump(-1, ' ', false, json::error_handler_t::replace));
      r.status = 500;
      return respond(std::move(r));
    }
    respond(JsonReply(InfoJson(*info)));
  });
}

std::string Server::Impl::ReloadText(const Generation& gen) const {
  std::string out =
      "# HELP coe_reloads_total Reloads of the served cascade (POST /coe/reload, SIGHUP), by outcome: ok (swapped "
      "in), failed (the old one kept serving).\n# TYPE coe_reloads_total counter\n";
  out += "coe_reloads_total{outcome=\"ok\"} " + std::to_string(reloads_ok.load()) + "\n";
  out += "coe_reloads_total{outcome=\"failed\"} " + std::to_string(reloads_failed.load()) + "\n";
  out +=
      "# HELP coe_cascade_generation The generation of the cascade serving new requests (1 at start, +1 per "
      "reload).\n# TYPE coe_cascade_generation gauge\n";
  out += "coe_cascade_generation " + std::to_string(gen.number) + "\n";
  out +=
      "# HELP coe_cascade_loaded_timestamp_seconds When the serving cascade was loaded (unix seconds).\n# TYPE "
      "coe_cascade_loaded_timestamp_seconds gauge\n";
  out += "coe_cascade_loaded_timestamp_seconds " + std::to_string(gen.loaded_at) + "\n";
  return out;
}

StatusOr<ReloadInfo> Server::Reload() { return impl_->Reload(nullptr); }

StatusOr<ReloadInfo> Server::Reload(const CascadeSource& source) { return impl_->Reload(&source); }

uint64_t Server::generation() const { return impl_->Current()->number; }

}  // namespace coe
