// The event-driven HTTP/1.1 transport (see http_transport.h): Boost.Beast on Asio.
#include "server/http_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

namespace coe::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

const std::string* Request::Header(std::string_view lower_name) const {
  for (const auto& [k, v] : headers)
    if (k == lower_name) return &v;
  return nullptr;
}

namespace {

std::string_view SV(boost::beast::string_view s) { return {s.data(), s.size()}; }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

// Inflates a gzip or zlib (raw = false) or raw deflate (raw = true) body into at most
// `limit` bytes. Returns 0 on success, 413 when the decoded body would pass the limit,
// 400 when the body is not valid compressed data, 503 when out of memory.
int Inflate(const std::string& in, bool raw, size_t limit, std::string* out, std::string* why) {
  z_stream z{};
  if (inflateInit2(&z, raw ? -MAX_WBITS : MAX_WBITS + 32) != Z_OK) {
    *why = "cannot start the decoder";
    return 400;
  }
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  out->clear();
  try {
    out->reserve(limit);  // address space; pages become resident as bytes are decoded
  } catch (const std::bad_alloc&) {
    inflateEnd(&z);
    *why = "server out of memory for this request's decoded body; retry later";
    return 503;
  }
  char chunk[64 << 10];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof chunk;
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&z);
      *why = rc == Z_BUF_ERROR ? "the compressed body ends early" : "the body is not valid compressed data";
      return 400;
    }
    const size_t got = sizeof chunk - z.avail_out;
    if (out->size() + got > limit) {
      inflateEnd(&z);
      out->clear();
      out->shrink_to_fit();
      *why = "decoded request body larger than " + std::to_string(limit) + " bytes (coe serve --max-body-mb)";
      return 413;
    }
    out->append(chunk, got);
    if (rc == Z_OK && got == 0 && z.avail_in == 0) {
      inflateEnd(&z);
      *why = "the compressed body ends early";
      return 400;
    }
  }
  inflateEnd(&z);
  return 0;
}

// A request body as beast's string_body reads it, except that a body it cannot
// allocate is an error (answered 503), not an exception out of the I/O thread (which
// would drop the connection unanswered).
struct Body {
  using value_type = std::string;
  class reader {
   public:
    template <bool isRequest, class Fields>
    reader(bhttp::header<isRequest, Fields>&, value_type& body) : body_(body) {}
    void init(const boost::optional<std::uint64_t>& length, beast::error_code& ec) {
      ec = {};
      if (length) Grow(body_.size() + static_cast<size_t>(*length), true, ec);
    }
    template <class ConstBufferSequence>
    size_t put(const ConstBufferSequence& buffers, beast::error_code& ec) {
      const size_t at = body_.size(), n = net::buffer_size(buffers);
      ec = {};
      Grow(at + n, false, ec);
      if (ec) return 0;
      net::buffer_copy(net::buffer(body_.data() + at, n), buffers);
      return n;
    }
    void finish(beast::error_code& ec) { ec = {}; }

   private:
    void Grow(size_t size, bool reserve_only, beast::error_code& ec) {
      try {
        reserve_only ? body_.reserve(size) : body_.resize(size);
      } catch (const std::bad_alloc&) {
        ec = boost::system::errc::make_error_code(boost::system::errc::not_enough_memory);
      } catch (const std::length_error&) {
        ec = boost::system::errc::make_error_code(boost::system::errc::not_enough_memory);
      }
    }
    value_type& body_;
  };
};

}  // namespace

class Session;

using Clock = std::chrono::steady_clock;

struct Transport::Impl : std::enable_shared_from_this<Transport::Impl> {
  TransportOptions options;
  Handler handler;
  ErrorReply error_reply;
  net::io_context ioc;
  // Keeps the I/O threads running while a connection waits for its handler (no I/O
  // pending): released by Wait once every connection is closed.
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor;
  std::vector<std::thread> threads;
  std::atomic<int> port{0};
  std::atomic<bool> stopping{false};

  std::mutex mu;               // guards sessions, accepting
  std::condition_variable cv;  // sessions emptied, accept loop ended
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  bool accepting = false;
  std::atomic<int> open{0};  // connections being served (not the refused ones)

  // A moving average of the I/O side of recent requests' time (Session::NoteIoWait):
  // over max_io_wait_ms, the server is out of CPU before its own queues fill.
  std::atomic<int64_t> io_wait_us{0};
  std::atomic<Clock::rep> io_wait_at{0};  // when it was last updated
  // The average, or 0 when no request finished in the last 100 ms (it is stale).
  int64_t RecentIoWaitUs() const {
    const auto at = Clock::time_point(Clock::duration(io_wait_at.load(std::memory_order_relaxed)));
    return Clock::now() - at < std::chrono::milliseconds(100) ? io_wait_us.load(std::memory_order_relaxed) : 0;
  }

  explicit Impl(int io_threads) : ioc(io_threads) { work.emplace(ioc.get_executor()); }
  void Accept();
  void Add(const std::shared_ptr<Session>& s);
  void Remove(Session* s);
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, std::shared_ptr<Transport::Impl> t, bool refuse)
      : t_(std::move(t)),
        registration_{t_.get(), this, refuse},
        refuse_(refuse),
        stream_(std::move(socket)),
        deadline_(stream_.get_executor()) {
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (!ec) remote_ = ep.address().to_string();
  }

  void Start() {
    if (refuse_) {
      Reply r = t_->error_reply(503, "", "server overloaded: too many connections");
      r.headers.emplace_back("Retry-After", "1");
      r.close = true;
      linger_ = true;
      return Write(std::move(r), 11);
    }
    ReadHeader();
  }

  // On the session's strand: a stop was asked for.
  void StopIfIdle() {
    stopping_ = true;
    if (reading_) stream_.cancel();
  }

  net::any_io_executor executor() { return stream_.get_executor(); }

 private:
  const TransportOptions& opt() const { return t_->options; }

  void ReadHeader() {
    if (stopping_ || t_->stopping) return Close();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(std::min<size_t>(opt().max_header_bytes, UINT32_MAX)));
    parser_->body_limit(opt().max_body_bytes);
    // A fresh connection or a kept-alive one waits for its next request at most the
    // idle timeout when nothing of it has arrived, else the header timeout.
    const int ms = served_ > 0 && buffer_.size() == 0 ? opt().idle_timeout_ms : opt().header_timeout_ms;
    stream_.expires_after(std::chrono::milliseconds(ms));
    reading_ = true;
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    reading_ = false;
    if (ec) return ReadFailed(ec, false);
    waited_us_ = KernelWaitUs();
    t_header_ = Clock::now();
    auto& req = parser_->get();
    path_ = std::string(req.target().substr(0, req.target().find('?')));
    // Encodings the server cannot decode are refused before their body is read.
    const std::string enc = Lower(Trim(SV(req[bhttp::field::content_encoding])));
    if (!enc.empty() && enc != "identity" && enc != "gzip" && enc != "x-gzip" && enc != "deflate")
      return Fail(415, "Content-Encoding '" + enc.substr(0, 64) + "' is not supported (gzip, deflate or identity)");
    if (parser_->is_done()) return OnBody({});
    // A body of unknown length (chunked) gets the limit's capacity at once: address
    // space only, its pages resident as bytes arrive, and never a doubling copy (which
    // would hold 1.5x the body).
    if (!parser_->content_length()) {
      try {
        req.body().reserve(opt().max_body_bytes);
      } catch (const std::bad_alloc&) {
        return ReadFailed(boost::system::errc::make_error_code(boost::system::errc::not_enough_memory), true);
      }
    }
    // The body, or its start, usually came with the header: parse what the buffer holds
    // here, and a complete request skips a trip through the I/O threads' queue (which
    // is long exactly when the server is busy).
    while (!parser_->is_done() && buffer_.size() > 0) {
      beast::error_code pec;
      const size_t used = parser_->put(buffer_.data(), pec);
      buffer_.consume(used);
      if (pec == bhttp::error::need_more) break;
      if (pec) return ReadFailed(pec, true);
      if (used == 0) break;
    }
    if (parser_->is_done()) return OnBody({});
    if (Lower(Trim(SV(req[bhttp::field::expect]))) == "100-continue") {
      auto cont = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_, req.version());
      stream_.expires_after(std::chrono::milliseconds(opt().write_timeout_ms));
      bhttp::async_write(stream_, *cont, [self = shared_from_this(), cont](beast::error_code ec, size_t) {
        if (ec) return self->Close();
        self->client_us_ = 0;
        self->ReadBody();
      });
      return;
    }
    client_us_ = 0;
    ReadBody();
  }

  // The body is read a piece at a time against its deadline, body_timeout_ms of the
  // client's time only: a piece's wait counts while the connection has nothing for us
  // to read, until its newest bytes arrived. Time bytes wait in the kernel for an I/O
  // thread (the server busy) is the server's, never the client's. A client past the
  // deadline gets 408 (the stream's own timeout would close the socket unanswered).
  void ReadBody() {
    stream_.expires_never();
    reading_ = true;
    piece_start_ = Clock::now();
    piece_had_bytes_ = KernelBytes() > 0;
    ArmBodyDeadline(int64_t{opt().body_timeout_ms} * 1000 - client_us_);
    bhttp::async_read_some(stream_, buffer_, *parser_,
                           [self = shared_from_this()](beast::error_code ec, size_t) { self->OnBodyPiece(ec); });
  }

  void OnBodyPiece(beast::error_code ec) {
    reading_ = false;
    ++deadline_gen_;
    deadline_.cancel();
    if (body_late_) {
      const size_t got = parser_->get().body().size();
      const auto want = parser_->content_length();
      return Fail(408, "the request body did not arrive within the " + std::to_string(opt().body_timeout_ms) +
                           " ms body deadline (the client's time; " + std::to_string(got) + " of " +
                           (want ? std::to_string(*want) : std::string("?")) + " bytes received)");
    }
    if (ec) return ReadFailed(ec, true);
    client_us_ += PieceClientUs(true);
    if (!parser_->is_done()) return ReadBody();
    // The body's transfer is the client's time: the I/O wait counts from its end.
    waited_us_ = std::max(waited_us_, KernelWaitUs());
    t_header_ = Clock::now();
    OnBody({});
  }

  // The client's share of the current piece's wait: none when bytes were waiting for
  // us at its start; else while nothing came (`done`: the read completed), until its
  // newest bytes arrived.
  int64_t PieceClientUs(bool done) {
    if (piece_had_bytes_) return 0;
    const int64_t waited = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - piece_start_).count();
    if (!done && KernelBytes() == 0) return waited;
    return std::max<int64_t>(0, waited - KernelWaitUs());
  }

  // In `left_us`, checks the client's time: past the deadline, the read is cancelled
  // (then 408); else checked again when it could be.
  void ArmBodyDeadline(int64_t left_us) {
    const uint64_t gen = ++deadline_gen_;
    deadline_.expires_after(std::chrono::microseconds(std::max<int64_t>(left_us, 1000)));
    deadline_.async_wait([self = shared_from_this(), gen](beast::error_code ec) {
      if (ec || gen != self->deadline_gen_ || !self->reading_) return;
      const int64_t left = int64_t{self->opt().body_timeout_ms} * 1000 - self->client_us_ - self->PieceClientUs(false);
      if (left > 0) return self->ArmBodyDeadline(left);
      self->body_late_ = true;
      beast::error_code ignored;
      self->stream_.socket().cancel(ignored);  // OnBodyPiece answers 408
    });
  }

  // Bytes received by the kernel that no read has taken yet.
  int KernelBytes() {
    int n = 0;
    return ioctl(stream_.socket().native_handle(), FIONREAD, &n) == 0 ? n : 0;
  }

  void OnBody(beast::error_code ec) {
    reading_ = false;
    if (ec) return ReadFailed(ec, true);
    stream_.expires_never();
    auto& msg = parser_->get();
    Request req;
    req.method = std::string(msg.method_string());
    req.path = path_;
    const auto target = msg.target();
    if (const size_t q = target.find('?'); q != std::string_view::npos) req.query = std::string(target.substr(q + 1));
    req.remote = remote_;
    for (const auto& f : msg) req.headers.emplace_back(Lower(SV(f.name_string())), std::string(f.value()));
    req.wire_bytes = msg.body().size();
    const std::string enc = Lower(Trim(SV(msg[bhttp::field::content_encoding])));
    if (enc == "gzip" || enc == "x-gzip" || enc == "deflate") {
      std::string why;
      int code = Inflate(msg.body(), false, opt().max_body_bytes, &req.body, &why);
      if (code == 400 && enc == "deflate") code = Inflate(msg.body(), true, opt().max_body_bytes, &req.body, &why);
      if (code != 0) return Fail(code, why);
    } else {
      req.body = std::move(msg.body());
    }
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();
    parser_.reset();
    ++served_;
    const int64_t recent_us = t_->RecentIoWaitUs();
    req.io_wait_us = recent_us;
    // Load shedding before any parsing: a work request (POST; never health, metadata or
    // metrics) whose bytes waited in the kernel longer than the bound, because the I/O
    // threads were behind, gets 503 at once. The excess then costs little, and those
    // accepted keep their latency. The connection stays open.
    const int64_t bound_us = int64_t{opt().max_io_wait_ms} * 1000;
    if (bound_us > 0 && req.method == "POST" && (waited_us_ > bound_us || recent_us > bound_us)) {
      Reply r = t_->error_reply(
          503, path_,
          "server overloaded: requests wait " + std::to_string(std::max(waited_us_, recent_us) / 1000) +
              " ms for the I/O threads (over the " + std::to_string(opt().max_io_wait_ms) + " ms bound)");
      r.headers.emplace_back("Retry-After", "1");
      handed_ = Clock::now();
      return Write(std::move(r), version_, handed_);
    }
    handling_ = true;
    req.cancelled = cancelled_ = std::make_shared<std::atomic<bool>>(false);
    auto answered = std::make_shared<std::atomic<bool>>(false);
    Responder respond = [self = shared_from_this(), answered](Reply r) {
      if (answered->exchange(true)) return;  // exactly once
      const Clock::time_point responded = Clock::now();
      net::post(self->executor(), [self, r = std::move(r), responded]() mutable {
        self->Write(std::move(r), self->version_, responded);
      });
    };
    handed_ = Clock::now();
    t_->handler(std::move(req), std::move(respond));
    if (handling_) WatchForClose();
  }

  // While the handler has the request: a readable socket is either the client's next
  // (pipelined) request, left for later, or its end of stream / a reset: the client is
  // gone, so its request is cancelled and the connection closed. Write ends the watch.
  void WatchForClose() {
    const uint64_t gen = ++watch_gen_;
    watching_ = true;
    stream_.socket().async_wait(tcp::socket::wait_read, [self = shared_from_this(), gen](beast::error_code ec) {
      if (gen != self->watch_gen_ || !self->watching_) return;  // ended by Write
      self->watching_ = false;
      if (ec) return;
      char c;
      const ssize_t n = ::recv(self->stream_.socket().native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n > 0) return;  // a pipelined request: the client is there
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return self->WatchForClose();
      self->gone_ = true;
      self->cancelled_->store(true);
      self->Close();
    });
  }

  // A read ended in an error: a clean close, a timeout, or a request to refuse.
  void ReadFailed(beast::error_code ec, bool in_body) {
    if (ec == bhttp::error::end_of_stream || ec == net::error::operation_aborted || ec == net::error::eof ||
        ec == net::error::connection_reset)
      return in_body && ec == bhttp::error::end_of_stream ? Fail(400, "the request ended before its body") : Close();
    // A client too slow for the header or body deadline (or idle too long) is closed:
    // the stream has already closed the socket, so no reply can be written.
    if (ec == beast::error::timeout) return Close();
    if (ec == boost::system::errc::not_enough_memory)  // then answered at once: the client may retry
      return Fail(503, "server out of memory for this request's body; retry later");
    if (ec == bhttp::error::body_limit)
      return Fail(
          413, "request body larger than " + std::to_string(opt().max_body_bytes) + " bytes (coe serve --max-body-mb)");
    if (ec == bhttp::error::header_limit)
      return Fail(431, "request header larger than " + std::to_string(opt().max_header_bytes) + " bytes");
    if (ec == bhttp::error::partial_message) return Fail(400, "the request ended before its body");
    return Fail(400, "malformed HTTP request: " + ec.message());
  }

  // Answers a transport error and closes the connection.
  void Fail(int status, const std::string& message) {
    Reply r = t_->error_reply(status, path_, message);
    if (status == 503) r.headers.emplace_back("Retry-After", "1");
    r.close = true;
    parser_.reset();
    linger_ = true;
    Write(std::move(r), version_);
  }

  // After an error reply to a client that may still be sending: stop sending, then
  // read and drop what it sends for a moment, so that closing with unread data (a TCP
  // reset) does not destroy the reply before the client reads it.
  void Linger() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.expires_after(std::chrono::milliseconds(2000));
    Drain();
  }
  void Drain() {
    scratch_.resize(64 << 10);
    stream_.async_read_some(net::buffer(scratch_), [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec || self->stopping_) return self->stream_.close();
      self->Drain();
    });
  }

  // `responded`: when the reply was ready (after the handler's own time), for the I/O
  // wait measured when it is written.
  void Write(Reply r, unsigned version, std::optional<Clock::time_point> responded = std::nullopt) {
    handling_ = false;
    if (watching_) {  // only the watch is pending now: cancel it before writing
      watching_ = false;
      ++watch_gen_;
      beast::error_code ec;
      stream_.socket().cancel(ec);
    }
    if (gone_) {  // the client went away: nobody to answer
      if (r.stream) r.stream->Close();
      return;
    }
    if (responded) NoteIoWait(*responded);
    if (r.stream) return WriteStream(std::move(r), version);
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>();
    const bool keep = Head(r, version, res.get());
    res->body() = std::move(r.body);
    res->prepare_payload();
    stream_.expires_after(std::chrono::milliseconds(opt().write_timeout_ms));
    bhttp::async_write(stream_, *res, [self = shared_from_this(), res, keep, responded](beast::error_code ec, size_t) {
      if (!ec && self->linger_) return self->Linger();
      if (ec || !keep) return self->Close();
      self->ReadHeader();
    });
  }

  // The status line and headers of reply `r` into *res; whether the connection is
  // kept alive after it.
  template <class Body>
  bool Head(const Reply& r, unsigned version, bhttp::response<Body>* res) {
    res->version(version == 10 ? 10 : 11);
    res->result(static_cast<unsigned>(r.status));
    res->set(bhttp::field::server, "coe");
    res->set(bhttp::field::content_type, r.content_type);
    for (auto& [k, v] : r.headers) res->set(k, v);
    const int cap = opt().max_requests_per_connection;
    const bool keep = !r.close && keep_alive_ && !refuse_ && !stopping_ && !t_->stopping && (cap <= 0 || served_ < cap);
    res->keep_alive(keep);
    return keep;
  }

  // A streamed reply (Reply::stream): its head, then its data as the producer queues
  // it (PumpStream), chunked on HTTP/1.1 and delimited by the connection's close on
  // HTTP/1.0. The client is watched all along (WatchForClose): one that goes away
  // cancels the request and closes the stream, as one whose write fails does.
  void WriteStream(Reply r, unsigned version) {
    reply_stream_ = std::move(r.stream);
    auto res = std::make_shared<bhttp::response<bhttp::empty_body>>();
    chunked_ = version != 10;
    if (!chunked_) r.close = true;
    stream_keep_ = Head(r, version, res.get());
    res->chunked(chunked_);
    auto sr = std::make_shared<bhttp::response_serializer<bhttp::empty_body>>(*res);
    reply_stream_->Attach([weak = weak_from_this()] {
      if (auto self = weak.lock()) net::post(self->executor(), [self] { self->PumpStream(); });
    });
    stream_busy_ = true;
    stream_.expires_after(std::chrono::milliseconds(opt().write_timeout_ms));
    bhttp::async_write_header(stream_, *sr, [self = shared_from_this(), res, sr](beast::error_code ec, size_t) {
      self->stream_busy_ = false;
      if (ec) return self->StreamFailed();
      self->PumpStream();
    });
    WatchForClose();
  }

  // Writes what the stream holds, if nothing is being written; at its end, the last
  // chunk, then the next request (or the close).
  void PumpStream() {
    if (stream_busy_ || !reply_stream_) return;
    const ReplyStream::Next next = reply_stream_->Take(&stream_out_);
    if (next == ReplyStream::Next::kNone || next == ReplyStream::Next::kClosed) return;
    auto done = [self = shared_from_this(), end = next == ReplyStream::Next::kEnd](beast::error_code ec, size_t) {
      self->stream_busy_ = false;
      if (ec) return self->StreamFailed();
      if (!end) return self->PumpStream();
      self->reply_stream_.reset();
      if (self->watching_) {  // the watch ends with the reply
        self->watching_ = false;
        ++self->watch_gen_;
        beast::error_code cec;
        self->stream_.socket().cancel(cec);
      }
      if (!self->stream_keep_) return self->Close();
      self->ReadHeader();
    };
    stream_busy_ = true;
    stream_.expires_after(std::chrono::milliseconds(opt().write_timeout_ms));
    if (next == ReplyStream::Next::kData && chunked_)
      net::async_write(stream_, bhttp::make_chunk(net::buffer(stream_out_)), std::move(done));
    else if (next == ReplyStream::Next::kData)
      net::async_write(stream_, net::buffer(stream_out_), std::move(done));
    else if (chunked_)
      net::async_write(stream_, bhttp::make_chunk_last(), std::move(done));
    else
      done({}, 0);
  }

  // A write of the stream failed or timed out: the client is gone.
  void StreamFailed() {
    gone_ = true;
    if (cancelled_) cancelled_->store(true);
    Close();
  }

  // The I/O side of a request's time (its wait in the kernel, then from its header, or
  // the end of its body, to the handler, then from its reply to the start of its
  // writing), into the transport's moving average. Neither the handler's own time (a
  // model, a far LLM) nor the client's (sending a body, reading a reply) counts.
  void NoteIoWait(Clock::time_point responded) {
    const auto us = [](Clock::duration d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); };
    const int64_t w = waited_us_ + us(handed_ - t_header_) + us(Clock::now() - responded);
    const int64_t old = t_->RecentIoWaitUs();
    t_->io_wait_us.store(old + (w - old) / 8, std::memory_order_relaxed);
    t_->io_wait_at.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  }

  // How long the newest bytes of this connection sat in the kernel before being read
  // (TCP_INFO's last_data_recv: millisecond steps), a wait no queue of ours can see.
  int64_t KernelWaitUs() {
    tcp_info ti{};
    socklen_t len = sizeof ti;
    if (getsockopt(stream_.socket().native_handle(), IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return 0;
    return int64_t{ti.tcpi_last_data_recv} * 1000;
  }

  void Close() {
    if (reply_stream_) reply_stream_->Close();  // its producer stops (Write returns false)
    ++deadline_gen_;
    deadline_.cancel();
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
  }

  // Destroyed in reverse order: the stream first (it deregisters from the I/O context),
  // then the registration (Transport::Wait may return once the last one is gone), and
  // last the transport's state, which may be released here, on whichever thread held
  // the session last (a batcher's, through its responder): never before the stream.
  struct Registration {
    Transport::Impl* t;
    Session* s;
    bool refused;
    ~Registration() {
      if (!refused) t->open--;
      t->Remove(s);
    }
  };
  std::shared_ptr<Transport::Impl> t_;
  Registration registration_;
  const bool refuse_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<Body>> parser_;
  std::string remote_, path_;
  bool keep_alive_ = true;
  unsigned version_ = 11;
  int served_ = 0;
  int64_t waited_us_ = 0;                // the current request's wait in the kernel
  Clock::time_point t_header_, handed_;  // its header read; given to the handler
  bool reading_ = false, handling_ = false, stopping_ = false, linger_ = false;
  bool watching_ = false, gone_ = false;          // WatchForClose: pending; the client went away
  uint64_t watch_gen_ = 0;                        // the current watch (a cancelled one's handler is ignored)
  std::shared_ptr<std::atomic<bool>> cancelled_;  // the current request's (Request::cancelled)
  // The body's deadline (ReadBody): the client's time so far, the piece being read.
  net::steady_timer deadline_;
  uint64_t deadline_gen_ = 0;  // the current check (a stale one's handler is ignored)
  int64_t client_us_ = 0;
  Clock::time_point piece_start_;
  bool piece_had_bytes_ = false, body_late_ = false;
  std::vector<char> scratch_;
  // A streamed reply being written (WriteStream): its producer's side, what is being
  // written, whether a write is pending, the encoding, and the connection's fate after.
  std::shared_ptr<ReplyStream> reply_stream_;
  std::string stream_out_;
  bool stream_busy_ = false, chunked_ = true, stream_keep_ = false;
};

void Transport::Impl::Add(const std::shared_ptr<Session>& s) {
  std::lock_guard<std::mutex> lock(mu);
  sessions.emplace(s.get(), s);
}

void Transport::Impl::Remove(Session* s) {
  std::lock_guard<std::mutex> lock(mu);
  sessions.erase(s);
  if (sessions.empty()) cv.notify_all();
}

void Transport::Impl::Accept() {
  acceptor->async_accept(net::make_strand(ioc), [self = shared_from_this()](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || self->stopping || !self->acceptor->is_open()) {
      std::lock_guard<std::mutex> lock(self->mu);
      self->accepting = false;
      self->cv.notify_all();
      return;
    }
    if (!ec) {
      socket.set_option(tcp::no_delay(true), ec);
      const bool refuse = self->open.load() >= self->options.max_connections;
      if (!refuse) self->open++;
      auto s = std::make_shared<Session>(std::move(socket), self, refuse);
      self->Add(s);
      net::dispatch(s->executor(), [s] { s->Start(); });
    } else if (ec == net::error::no_descriptors) {
      // Out of file descriptors: pause accepting briefly rather than spin.
      auto timer = std::make_shared<net::steady_timer>(self->ioc, std::chrono::milliseconds(50));
      timer->async_wait([self, timer](beast::error_code) { self->Accept(); });
      return;
    }
    self->Accept();
  });
}

Transport::Transport(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

Transport::~Transport() {
  Stop();
  Wait();
}

StatusOr<std::unique_ptr<Transport>> Transport::Listen(const std::string& host, int port,
                                                       const TransportOptions& options, Handler handler,
                                                       ErrorReply error_reply) {
  auto impl = std::make_shared<Impl>(std::max(1, options.io_threads));
  impl->options = options;
  impl->handler = std::move(handler);
  impl->error_reply = std::move(error_reply);
  // Keep room for the process's other descriptors (model files, outgoing connections).
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    const int room = static_cast<int>(std::max<rlim_t>(lim.rlim_cur, 128) - 64);
    impl->options.max_connections = std::max(1, std::min(impl->options.max_connections, room));
  }
  beast::error_code ec;
  const auto address = net::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) return InvalidArgumentError("cannot listen on '" + host + "': not an IP address");
  tcp::endpoint ep(address, static_cast<unsigned short>(port));
  impl->acceptor.emplace(net::make_strand(impl->ioc));
  auto& a = *impl->acceptor;
  auto fail = [&](const char* what) {
    return UnavailableError("cannot listen on " + host + ":" + std::to_string(port) + " (" + what + ": " +
                            ec.message() + ")");
  };
  a.open(ep.protocol(), ec);
  if (ec) return fail("open");
  // SO_REUSEADDR only: a restarted server takes its port at once, a second one cannot.
  a.set_option(net::socket_base::reuse_address(true), ec);
  a.bind(ep, ec);
  if (ec) return fail("bind");
  a.listen(std::max(1, options.listen_backlog), ec);
  if (ec) return fail("listen");
  impl->port = a.local_endpoint(ec).port();
  impl->accepting = true;
  impl->Accept();
  for (int i = 0; i < std::max(1, options.io_threads); ++i)
    impl->threads.emplace_back([im = impl.get()] {
      for (;;) {
        try {
          im->ioc.run();
          return;
        } catch (...) {  // a handler threw: keep serving
        }
      }
    });
  return std::unique_ptr<Transport>(new Transport(std::move(impl)));
}

int Transport::port() const { return impl_->port; }
int Transport::connections() const { return impl_->open; }

void Transport::Stop() {
  Impl& im = *impl_;
  if (im.stopping.exchange(true)) return;
  net::post(im.acceptor->get_executor(), [t = impl_] {
    beast::error_code ec;
    t->acceptor->cancel(ec);
    t->acceptor->close(ec);
  });
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard<std::mutex> lock(im.mu);
    for (auto& [p, w] : im.sessions)
      if (auto s = w.lock()) live.push_back(std::move(s));
  }
  for (auto& s : live) net::post(s->executor(), [s] { s->StopIfIdle(); });
}

void Transport::Wait() {
  Impl& im = *impl_;
  {
    std::unique_lock<std::mutex> lock(im.mu);
    im.cv.wait(lock, [&] { return !im.accepting && im.sessions.empty(); });
  }
  im.work.reset();
  im.ioc.stop();
  for (std::thread& t : im.threads)
    if (t.joinable()) t.join();
  im.threads.clear();
}

}  // namespace coe::http
