// The Open Inference Protocol over gRPC (src/server/grpc_frontend.h) on loopback, with
// a C++ client generated from proto/open_inference.proto: health and metadata, infer
// with typed and raw contents equal to Cascade::Run and to the REST API, errors.
#include "coe/grpc.h"

#include <grpcpp/grpcpp.h>

#include <bit>
#include <cstring>

#include "open_inference.grpc.pb.h"
#include "server_testing.h"

namespace coe {
namespace {

using namespace coe::testing;
namespace pb = ::inference;

#ifdef COE_TSAN
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();
#endif

// The test's client is gRPC's code, not coe's: a blocking call hands its result (the
// status message, allocated by libstdc++ code compiled into this binary) from a gRPC
// thread to the caller through synchronization TSan cannot see (Debian's gRPC and
// Abseil are not instrumented). Under TSan the calling thread's own accesses are
// ignored for the duration of a client call; the server side (coe's handlers, on
// gRPC's threads) stays fully checked. A no-op in other builds. The report without it
// (8 of them in Grpc*, all this shape):
//   WARNING: ThreadSanitizer: data race
//   Read of size 1 by main thread:
//     #3 grpc::internal::CallOpClientRecvStatus::FinishOp  grpcpp/impl/call_op_set.h:805
//     #5 grpc::CompletionQueue::Pluck                      grpcpp/completion_queue.h:330
//     #8 inference::GRPCInferenceService::Stub::ModelReady
//   Previous write of size 8 by thread T16 (created by grpc_core::Thread, libgpr.so.29):
//     #8 std::string::resize
//     #9 absl::debian3::CopyCordToString                   (libabsl_cord.so.20220623)
// The status string is written on gRPC's thread and read by the caller after
// CompletionQueue::Pluck, whose synchronization lies in uninstrumented libgrpc.
struct ClientCall {
  ClientCall() {
#ifdef COE_TSAN
    __tsan_ignore_thread_begin();
#endif
  }
  ~ClientCall() {
#ifdef COE_TSAN
    __tsan_ignore_thread_end();
#endif
  }
};

class GrpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Server::Create(TwoTier(), ParseOrDie(ZooToml()), EngineOptions{.threads = 2, .chunk = 64}, {});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(*s);
    GrpcOptions o;
    o.max_message_bytes = 4u << 20;
    auto g = GrpcFrontend::Start("127.0.0.1", 0, server_.get(), o);
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    grpc_ = std::move(*g);
    ASSERT_GT(grpc_->port(), 0);
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    stub_ = pb::GRPCInferenceService::NewStub(grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(grpc_->port()),
                                                                        grpc::InsecureChannelCredentials(), args));
  }
  void TearDown() override {
    stub_.reset();
    if (grpc_) grpc_->Stop();
  }

  grpc::Status Infer(const pb::ModelInferRequest& q, pb::ModelInferResponse* res) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    ClientCall scope;
    return stub_->ModelInfer(&ctx, q, res);
  }

  std::unique_ptr<Server> server_;
  std::unique_ptr<GrpcFrontend> grpc_;
  std::unique_ptr<pb::GRPCInferenceService::Stub> stub_;
};

// A request for `in` as FP32 [N, 1, 28, 28], typed or raw.
pb::ModelInferRequest Request(const InputBatch& in, bool raw, const std::vector<std::string>& outputs = {},
                              const std::string& model = "fashion") {
  pb::ModelInferRequest q;
  q.set_model_name(model);
  auto* t = q.add_inputs();
  t->set_name("input");
  t->set_datatype("FP32");
  t->add_shape(in.size());
  for (int64_t d : in.example_shape) t->add_shape(d);
  if (raw) {
    std::string* bytes = q.add_raw_input_contents();
    bytes->resize(in.data.size() * 4);
    std::memcpy(bytes->data(), in.data.data(), bytes->size());  // x86: little-endian already
  } else {
    for (float v : in.data) t->mutable_contents()->add_fp32_contents(v);
  }
  for (const std::string& o : outputs) q.add_outputs()->set_name(o);
  return q;
}

const pb::ModelInferResponse::InferOutputTensor* Out(const pb::ModelInferResponse& r, const std::string& name,
                                                     int* index = nullptr) {
  for (int i = 0; i < r.outputs_size(); ++i)
    if (r.outputs(i).name() == name) {
      if (index) *index = i;
      return &r.outputs(i);
    }
  return nullptr;
}

// Raw BYTES: 4-byte little-endian length, then the bytes, per element.
std::vector<std::string> RawStrings(const std::string& raw) {
  std::vector<std::string> out;
  for (size_t p = 0; p + 4 <= raw.size();) {
    uint32_t n;
    std::memcpy(&n, raw.data() + p, 4);
    out.push_back(raw.substr(p + 4, n));
    p += 4 + n;
  }
  return out;
}

TEST_F(GrpcTest, HealthAndMetadata) {
  {
    grpc::ClientContext ctx;
    pb::ServerLiveResponse r;
    ClientCall scope;
    ASSERT_TRUE(stub_->ServerLive(&ctx, {}, &r).ok());
    EXPECT_TRUE(r.live());
  }
  {
    grpc::ClientContext ctx;
    pb::ServerReadyResponse r;
    ClientCall scope;
    ASSERT_TRUE(stub_->ServerReady(&ctx, {}, &r).ok());
    EXPECT_TRUE(r.ready());
  }
  {
    grpc::ClientContext ctx;
    pb::ServerMetadataResponse r;
    ClientCall scope;
    ASSERT_TRUE(stub_->ServerMetadata(&ctx, {}, &r).ok());
    EXPECT_EQ(r.name(), "coe");
  }
  for (const std::string name : {"fashion", "cnn8_16"}) {
    grpc::ClientContext ctx;
    pb::ModelMetadataRequest q;
    q.set_name(name);
    pb::ModelMetadataResponse r;
    grpc::Status s;
    {
      ClientCall scope;
      s = stub_->ModelMetadata(&ctx, q, &r);
    }
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(r.name(), name);
    EXPECT_EQ(r.platform(), "coe");
    ASSERT_EQ(r.inputs_size(), 1);
    EXPECT_EQ(r.inputs(0).datatype(), "FP32");
    EXPECT_EQ(std::vector<int64_t>(r.inputs(0).shape().begin(), r.inputs(0).shape().end()),
              (std::vector<int64_t>{-1, 1, 28, 28}));
    std::map<std::string, std::string> outputs;
    for (const auto& o : r.outputs()) outputs[o.name()] = o.datatype();
    EXPECT_EQ(outputs, (std::map<std::string, std::string>{{"label", "BYTES"},
                                                           {"exit_tier", "INT32"},
                                                           {"degraded", "BOOL"},
                                                           {"probabilities", "FP32"},
                                                           {"agreement", "FP32"}}));
    grpc::ClientContext rc;
    pb::ModelReadyRequest rq;
    rq.set_name(name);
    rq.set_version("1");
    pb::ModelReadyResponse rr;
    {
      ClientCall scope;
      ASSERT_TRUE(stub_->ModelReady(&rc, rq, &rr).ok());
    }
    EXPECT_TRUE(rr.ready());
  }
  for (auto [name, version] : {std::pair{"nope", ""}, std::pair{"fashion", "2"}}) {
    grpc::ClientContext ctx;
    pb::ModelReadyRequest q;
    q.set_name(name);
    q.set_version(version);
    pb::ModelReadyResponse r;
    grpc::Status s;
    {
      ClientCall scope;
      s = stub_->ModelReady(&ctx, q, &r);
    }
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << name << " " << version;
    EXPECT_NE(s.error_message().find(name), std::string::npos) << s.error_message();
  }
}

TEST_F(GrpcTest, InferTypedAndRawEqualCascadeRunAndRest) {
  auto local = Cascade::Create(TwoTier(), ParseOrDie(ZooToml()), EngineOptions{.threads = 1});
  ASSERT_TRUE(local.ok());
  InputBatch in = TestImages(300);
  auto want = (*local)->Run(in, RunOptions{.want_probs = true});
  ASSERT_TRUE(want.ok());
  const std::vector<std::string> all = {"label", "exit_tier", "degraded", "probabilities"};

  pb::ModelInferRequest typed_q = Request(in, false, all);
  typed_q.set_id("t1");
  pb::ModelInferResponse typed;
  grpc::Status s = Infer(typed_q, &typed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(typed.model_name(), "fashion");
  EXPECT_EQ(typed.id(), "t1");
  EXPECT_EQ(typed.raw_output_contents_size(), 0);
  ASSERT_EQ(typed.outputs_size(), 4);
  EXPECT_EQ(typed.parameters().at("degraded_count").int64_param(), 0);
  EXPECT_EQ(
      typed.parameters().at("labels").string_param(),
      "[\"tshirt\",\"trouser\",\"pullover\",\"dress\",\"coat\",\"sandal\",\"shirt\",\"sneaker\",\"bag\",\"boot\"]");

  pb::ModelInferResponse raw;
  s = Infer(Request(in, true, all), &raw);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(raw.raw_output_contents_size(), 4);
  int li = -1, ti = -1, di = -1, pi = -1;
  ASSERT_TRUE(Out(raw, "label", &li) && Out(raw, "exit_tier", &ti) && Out(raw, "degraded", &di) &&
              Out(raw, "probabilities", &pi));
  EXPECT_EQ(Out(raw, "label")->datatype(), "BYTES");
  EXPECT_FALSE(Out(raw, "label")->has_contents());
  const std::vector<std::string> raw_labels = RawStrings(raw.raw_output_contents(li));
  ASSERT_EQ(raw_labels.size(), 300u);
  ASSERT_EQ(raw.raw_output_contents(ti).size(), 300u * 4);
  ASSERT_EQ(raw.raw_output_contents(di).size(), 300u);
  ASSERT_EQ(raw.raw_output_contents(pi).size(), 300u * 10 * 4);

  const auto& tl = Out(typed, "label")->contents().bytes_contents();
  const auto& tt = Out(typed, "exit_tier")->contents().int_contents();
  const auto& td = Out(typed, "degraded")->contents().bool_contents();
  const auto& tp = Out(typed, "probabilities")->contents().fp32_contents();
  ASSERT_EQ(tl.size(), 300);
  ASSERT_EQ(tp.size(), 3000);
  EXPECT_EQ(
      std::vector<int64_t>(Out(typed, "probabilities")->shape().begin(), Out(typed, "probabilities")->shape().end()),
      (std::vector<int64_t>{300, 10}));
  int deferred = 0;
  for (int i = 0; i < 300; ++i) {
    const std::string label = (*local)->labels().name(want->answer[i]);
    EXPECT_EQ(tl[i], label) << i;
    EXPECT_EQ(raw_labels[i], label) << i;
    EXPECT_EQ(tt[i], want->exit_tier[i] + 1) << i;
    int32_t t;
    std::memcpy(&t, raw.raw_output_contents(ti).data() + 4 * i, 4);
    EXPECT_EQ(t, want->exit_tier[i] + 1) << i;
    EXPECT_FALSE(td[i]);
    EXPECT_EQ(raw.raw_output_contents(di)[i], 0);
    deferred += want->exit_tier[i] == 1;
    for (int l = 0; l < 10; ++l) {
      float p;
      std::memcpy(&p, raw.raw_output_contents(pi).data() + 4 * (i * 10 + l), 4);
      ASSERT_EQ(tp[i * 10 + l], want->probs[i][l]) << i << "," << l;  // bit-exact
      ASSERT_EQ(p, want->probs[i][l]) << i << "," << l;
    }
  }
  EXPECT_GT(deferred, 0);

  // The REST API on the same server answers the same.
  ASSERT_TRUE(server_->Start("127.0.0.1", 0).ok());
  Reply rest = Http(server_->port(), "POST", "/v2/models/fashion/infer", InferBody(in));
  ASSERT_EQ(rest.status, 200);
  for (int i = 0; i < 300; ++i) {
    EXPECT_EQ((*Output(rest.body, "label"))["data"][i], tl[i]);
    EXPECT_EQ((*Output(rest.body, "exit_tier"))["data"][i], tt[i]);
  }
  server_->Stop();
  server_->Wait();

  // Default outputs, flattened [N, 784], a member on its own.
  pb::ModelInferRequest flat = Request(in, true, {}, "cnn8_16");
  flat.mutable_inputs(0)->clear_shape();
  flat.mutable_inputs(0)->add_shape(300);
  flat.mutable_inputs(0)->add_shape(784);
  pb::ModelInferResponse m;
  s = Infer(flat, &m);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(m.outputs_size(), 3);
  EXPECT_EQ(m.raw_output_contents_size(), 3);
  EXPECT_EQ(Out(m, "probabilities"), nullptr);
  EXPECT_EQ(m.parameters().count("labels"), 0u);
}

// The "agreement" output (the answering tier's vote share), added in one place
// (src/server/cascade_outputs.cc): listed in both metadata, answered over gRPC typed
// and raw and over REST, equal to Cascade::Run's vote, and not answered by default.
TEST_F(GrpcTest, AgreementIsOneOutputOnEveryRoute) {
  auto local = Cascade::Create(TwoTier(), ParseOrDie(ZooToml()), EngineOptions{.threads = 1});
  ASSERT_TRUE(local.ok());
  InputBatch in = TestImages(200);
  auto want = (*local)->Run(in, RunOptions{});
  ASSERT_TRUE(want.ok());
  pb::ModelInferResponse typed, raw;
  ASSERT_TRUE(Infer(Request(in, false, {"agreement"}), &typed).ok());
  ASSERT_TRUE(Infer(Request(in, true, {"label", "agreement"}), &raw).ok());
  ASSERT_NE(Out(typed, "agreement"), nullptr);
  EXPECT_EQ(Out(typed, "agreement")->datatype(), "FP32");
  const auto& ta = Out(typed, "agreement")->contents().fp32_contents();
  int ai = -1;
  ASSERT_TRUE(Out(raw, "agreement", &ai));
  ASSERT_EQ(raw.raw_output_contents(ai).size(), 200u * 4);
  ASSERT_TRUE(server_->Start("127.0.0.1", 0).ok());
  Reply rest = Http(server_->port(), "POST", "/v2/models/fashion/infer", InferBody(in, {"agreement"}));
  ASSERT_EQ(rest.status, 200) << rest.raw;
  const json* ra = Output(rest.body, "agreement");
  ASSERT_NE(ra, nullptr);
  ASSERT_EQ(ta.size(), 200);
  for (int i = 0; i < 200; ++i) {
    const float a = static_cast<float>(want->vote[i].agreement);
    float r;
    std::memcpy(&r, raw.raw_output_contents(ai).data() + 4 * i, 4);
    EXPECT_EQ(ta[i], a) << i;
    EXPECT_EQ(r, a) << i;
    EXPECT_EQ((*ra)["data"][i].get<float>(), a) << i;
  }
  Reply meta = Http(server_->port(), "GET", "/v2/models/fashion");
  EXPECT_NE(meta.raw.find("\"agreement\""), std::string::npos) << meta.raw;
  server_->Stop();
  server_->Wait();
  pb::ModelInferResponse defaults;
  ASSERT_TRUE(Infer(Request(in, false), &defaults).ok());
  EXPECT_EQ(Out(defaults, "agreement"), nullptr);
}

TEST_F(GrpcTest, Uint8InputIsThePixelValues) {
  // Raw pixel bytes read as coe's dataset reader reads IDX files: value v -> float v.
  InputBatch in = TestImages(50);
  pb::ModelInferResponse want, typed, raw;
  ASSERT_TRUE(Infer(Request(in, false), &want).ok());
  pb::ModelInferRequest u = Request(in, false);
  u.mutable_inputs(0)->set_datatype("UINT8");
  u.mutable_inputs(0)->mutable_contents()->clear_fp32_contents();
  for (float v : in.data) u.mutable_inputs(0)->mutable_contents()->add_uint_contents(static_cast<uint32_t>(v));
  ASSERT_TRUE(Infer(u, &typed).ok());
  pb::ModelInferRequest r = Request(in, false);
  r.mutable_inputs(0)->set_datatype("UINT8");
  r.mutable_inputs(0)->clear_contents();
  std::string* bytes = r.add_raw_input_contents();
  for (float v : in.data) bytes->push_back(static_cast<char>(static_cast<uint8_t>(v)));
  grpc::Status s = Infer(r, &raw);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const auto& wl = Out(want, "label")->contents().bytes_contents();
  EXPECT_EQ(std::vector<std::string>(wl.begin(), wl.end()),
            std::vector<std::string>(Out(typed, "label")->contents().bytes_contents().begin(),
                                     Out(typed, "label")->contents().bytes_contents().end()));
  int li = -1;
  ASSERT_TRUE(Out(raw, "label", &li));
  EXPECT_EQ(std::vector<std::string>(wl.begin(), wl.end()), RawStrings(raw.raw_output_contents(li)));

  u.mutable_inputs(0)->mutable_contents()->set_uint_contents(0, 256);
  pb::ModelInferResponse bad;
  EXPECT_EQ(Infer(u, &bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(GrpcTest, ErrorsCarryCodesAndCoeMessages) {
  InputBatch in = TestImages(2);
  struct Case {
    std::string what;
    pb::ModelInferRequest q;
    grpc::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases;
  cases.push_back({"unknown model", Request(in, false, {}, "nope"), grpc::StatusCode::NOT_FOUND, "no model named"});
  {
    pb::ModelInferRequest q = Request(in, false);
    q.set_model_version("7");
    cases.push_back({"unknown version", q, grpc::StatusCode::NOT_FOUND, "no version '7'"});
  }
  {
    pb::ModelInferRequest q = Request(in, true);
    q.mutable_inputs(0)->set_shape(2, 27);
    cases.push_back({"wrong shape", q, grpc::StatusCode::INVALID_ARGUMENT, "the model takes [-1, 1, 28, 28]"});
  }
  {
    pb::ModelInferRequest q = Request(in, true);
    q.mutable_raw_input_contents(0)->pop_back();
    cases.push_back({"wrong byte length", q, grpc::StatusCode::INVALID_ARGUMENT, "holds 6271 bytes"});
  }
  {
    pb::ModelInferRequest q = Request(in, false);
    q.mutable_inputs(0)->mutable_contents()->mutable_fp32_contents()->RemoveLast();
    cases.push_back({"too few values", q, grpc::StatusCode::INVALID_ARGUMENT, "fp32_contents holds 1567"});
  }
  {
    pb::ModelInferRequest q = Request(in, false);
    q.mutable_inputs(0)->mutable_contents()->set_fp32_contents(5, std::nanf(""));
    cases.push_back({"NaN", q, grpc::StatusCode::INVALID_ARGUMENT, "element 5 is not a finite number"});
  }
  {
    pb::ModelInferRequest q = Request(in, false);
    q.mutable_inputs(0)->set_datatype("INT64");
    cases.push_back({"datatype", q, grpc::StatusCode::INVALID_ARGUMENT, "datatype INT64"});
  }
  {
    pb::ModelInferRequest q = Request(in, false);
    *q.add_inputs() = q.inputs(0);
    cases.push_back({"two inputs", q, grpc::StatusCode::INVALID_ARGUMENT, "one input tensor"});
  }
  {
    pb::ModelInferRequest q = Request(in, false);
    q.clear_inputs();
    cases.push_back({"no inputs", q, grpc::StatusCode::INVALID_ARGUMENT, "no inputs"});
  }
  {
    pb::ModelInferRequest q = Request(in, true);
    q.mutable_inputs(0)->mutable_contents()->add_fp32_contents(1);
    cases.push_back({"raw and typed", q, grpc::StatusCode::INVALID_ARGUMENT, "both contents and raw"});
  }
  {
    pb::ModelInferRequest q = Request(in, false, {"label", "logits"});
    cases.push_back({"unknown output", q, grpc::StatusCode::INVALID_ARGUMENT, "unknown output 'logits'"});
  }
  {
    pb::ModelInferRequest q = Request(in, false);
    q.mutable_inputs(0)->set_shape(0, -2);
    cases.push_back({"negative batch", q, grpc::StatusCode::INVALID_ARGUMENT, "impossible shape"});
  }
  {
    pb::ModelInferRequest q = Request(in, false);
    (*q.mutable_parameters())["priority"].set_int64_param(1);
    cases.push_back({"a request parameter", q, grpc::StatusCode::INVALID_ARGUMENT,
                     "parameters of the request (priority) are not honoured over gRPC"});
  }
  {
    pb::ModelInferRequest q = Request(in, false, {"label"});
    (*q.mutable_outputs(0)->mutable_parameters())["binary_data"].set_bool_param(true);
    cases.push_back({"an output parameter", q, grpc::StatusCode::INVALID_ARGUMENT,
                     "parameters of outputs[0] (binary_data) are not honoured over gRPC"});
  }
  for (const Case& c : cases) {
    pb::ModelInferResponse r;
    grpc::Status s = Infer(c.q, &r);
    EXPECT_EQ(s.error_code(), c.code) << c.what << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(c.message), std::string::npos) << c.what << ": " << s.error_message();
    EXPECT_LE(s.error_message().size(), kMaxErrorMessageBytes) << c.what;
  }
  // A very long model name: the message is cut, and says so.
  pb::ModelInferResponse r;
  grpc::Status s = Infer(Request(in, false, {}, std::string(5000, 'x')), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message().size(), kMaxErrorMessageBytes);
  EXPECT_TRUE(s.error_message().ends_with("...")) << s.error_message();
  // A message over max_message_bytes (4 MiB here) is refused by gRPC itself.
  InputBatch many = TestImages(1400);  // 1400 * 784 * 4 bytes = 4.4 MB
  s = Infer(Request(many, true), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
}

TEST_F(GrpcTest, ConcurrentClientsGetTheirOwnAnswers) {
  InputBatch in = TestImages(64);
  pb::ModelInferResponse want;
  ASSERT_TRUE(Infer(Request(in, true), &want).ok());
  std::vector<std::thread> clients;
  std::atomic<int> wrong{0};
  for (int k = 0; k < 4; ++k)
    clients.emplace_back([&, k] {
      for (int j = 0; j < 5; ++j) {
        pb::ModelInferResponse r;
        grpc::Status s = Infer(Request(in, (j + k) % 2 == 0), &r);
        if (!s.ok()) {
          wrong++;
          continue;
        }
        int li = -1;
        const auto* o = Out(r, "label", &li);
        std::vector<std::string> got = r.raw_output_contents_size()
                                           ? RawStrings(r.raw_output_contents(li))
                                           : std::vector<std::string>(o->contents().bytes_contents().begin(),
                                                                      o->contents().bytes_contents().end());
        int wi = -1;
        Out(want, "label", &wi);
        if (got != RawStrings(want.raw_output_contents(wi))) wrong++;
      }
    });
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(wrong, 0);
  // Stop is idempotent; the port stays known.
  grpc_->Stop();
  grpc_->Stop();
  EXPECT_GT(grpc_->port(), 0);
}

TEST(GrpcStart, BusyServerAnswersUnavailable) {
  // Admission is the server's: beyond max_inflight running requests, UNAVAILABLE.
  ServerOptions so;
  so.max_inflight = 1;
  auto s = Server::Create({{"slow", SlowCascade("linear", std::chrono::milliseconds(1000))}}, so);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto g = GrpcFrontend::Start("127.0.0.1", 0, s->get(), {});
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  auto stub = pb::GRPCInferenceService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*g)->port()), grpc::InsecureChannelCredentials()));
  const pb::ModelInferRequest q = Request(TestImages(1), true, {}, "slow");
  std::vector<grpc::Status> got(3);
  std::vector<std::thread> clients;
  for (int k = 0; k < 3; ++k)
    clients.emplace_back([&, k] {
      grpc::ClientContext ctx;
      pb::ModelInferResponse r;
      ClientCall scope;
      got[k] = stub->ModelInfer(&ctx, q, &r);
    });
  for (std::thread& t : clients) t.join();
  int ok = 0, busy = 0;
  for (const grpc::Status& st : got) {
    ok += st.ok();
    if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
      busy++;
      EXPECT_NE(st.error_message().find("server busy"), std::string::npos) << st.error_message();
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1);
  EXPECT_EQ(ok + busy, 3);
}

// A chat cascade takes chat messages: a tensor is INVALID_ARGUMENT naming the route.
TEST(GrpcStart, TensorsForAChatModelAreInvalidArgument) {
  ChatUpstream chat;
  auto s = chat.Serve();
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto g = GrpcFrontend::Start("127.0.0.1", 0, s->get(), {});
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  auto stub = pb::GRPCInferenceService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*g)->port()), grpc::InsecureChannelCredentials()));
  InputBatch in;
  in.example_shape = {3};
  in.data = {1, 2, 3};
  grpc::ClientContext ctx;
  pb::ModelInferResponse r;
  grpc::Status st;
  {
    ClientCall scope;
    st = stub->ModelInfer(&ctx, Request(in, false, {}, "chat"), &r);
  }
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  EXPECT_EQ(st.error_message(), "model 'chat' takes chat messages (POST /v1/chat/completions), not tensors");
  EXPECT_EQ(chat.replay.requests.load(), 0);
}

TEST(GrpcStart, BadArgumentsAndBusyPort) {
  auto s = Server::Create(TwoTier(), ParseOrDie(ZooToml()), EngineOptions{.threads = 1}, {});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(GrpcFrontend::Start("127.0.0.1", 70000, s->get(), {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(GrpcFrontend::Start("127.0.0.1", 0, nullptr, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(GrpcFrontend::Start("127.0.0.1", 0, s->get(), {.max_concurrent_calls = 0}).status().code(),
            StatusCode::kInvalidArgument);
  auto first = GrpcFrontend::Start("127.0.0.1", 0, s->get(), {});
  ASSERT_TRUE(first.ok());
  auto second = GrpcFrontend::Start("127.0.0.1", (*first)->port(), s->get(), {});
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable) << second.status().ToString();
}

// With a request log, a gRPC request is logged by its id, or by one made for it that
// its response carries; each example's line holds the members' answers and the
// cascade's (coe/request_log.h).
TEST(GrpcRequestLog, LogsByTheRequestsIdOrOneMadeForIt) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("coe_grpc_log_" + std::to_string(::getpid()) + ".log")).string();
  ServerOptions so;
  so.request_log.path = path;
  auto s = Server::Create(TwoTier(), ParseOrDie(ZooToml()), EngineOptions{.threads = 2}, so);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto g = GrpcFrontend::Start("127.0.0.1", 0, s->get(), GrpcOptions{});
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  auto stub = pb::GRPCInferenceService::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string((*g)->port()), grpc::InsecureChannelCredentials()));
  std::vector<std::string> labels;
  auto infer = [&](const pb::ModelInferRequest& q) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    pb::ModelInferResponse res;
    ClientCall scope;
    EXPECT_TRUE(stub->ModelInfer(&ctx, q, &res).ok());
    for (const auto& o : res.outputs())
      if (o.name() == "label")
        for (const std::string& l : o.contents().bytes_contents()) labels.push_back(l);
    return res.id();
  };
  const InputBatch in = TestImages(3);
  const std::string made = infer(Request(in.Slice(0, 2), false));
  EXPECT_FALSE(made.empty()) << "a request without an id gets one";
  pb::ModelInferRequest named = Request(in.Slice(2, 3), false);
  named.set_id("g1");
  EXPECT_EQ(infer(named), "g1");
  (*g)->Stop();
  s->reset();
  std::ifstream file(path);
  std::vector<json> lines;
  for (std::string line; std::getline(file, line);) lines.push_back(json::parse(line));
  std::filesystem::remove(path);
  std::filesystem::remove_all(path + ".tensors");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["id"], made + "/0");
  EXPECT_EQ(lines[1]["id"], made + "/1");
  EXPECT_EQ(lines[2]["id"], "g1");
  ASSERT_EQ(labels.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(lines[i]["route"], "grpc");
    EXPECT_EQ(lines[i]["answer"], labels[i]);
    EXPECT_GE(lines[i]["members"].size(), 2u);
  }
}

// A reload (Server::Reload, what POST /coe/reload and SIGHUP call) is seen by gRPC too:
// the next call runs the new cascade (one tier: every exit is tier 1) and a member the
// new cascade dropped is NOT_FOUND.
TEST_F(GrpcTest, SeesAReload) {
  const InputBatch in = TestImages(64);
  auto exit_tiers = [&] {
    pb::ModelInferResponse res;
    const grpc::Status s = Infer(Request(in, false, {"exit_tier"}), &res);
    EXPECT_TRUE(s.ok()) << s.error_message();
    const auto* t = Out(res, "exit_tier");
    return t ? std::vector<int>(t->contents().int_contents().begin(), t->contents().int_contents().end())
             : std::vector<int>{};
  };
  std::vector<int> before = exit_tiers();
  EXPECT_NE(std::find(before.begin(), before.end(), 2), before.end()) << "some defer to tier 2";
  CascadeSource next{.spec = {}, .catalogue = ParseOrDie(ZooToml()), .origin = "test"};
  next.spec.name = "fashion";
  next.spec.tiers.push_back(TierSpec{{"cnn8_16"}, {}});
  StatusOr<ReloadInfo> info = server_->Reload(next);
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(exit_tiers(), std::vector<int>(64, 1));
  pb::ModelMetadataRequest q;
  q.set_name("mlp256x2");
  pb::ModelMetadataResponse r;
  grpc::ClientContext ctx;
  grpc::Status s;
  {
    ClientCall scope;
    s = stub_->ModelMetadata(&ctx, q, &r);
  }
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
}

}  // namespace
}  // namespace coe
