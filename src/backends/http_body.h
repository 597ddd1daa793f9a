// Internal: the HTTP backends' request and response bodies (remote, openai): a request
// body sent without a copy, a response body bounded as it arrives.
#ifndef COE_BACKENDS_HTTP_BODY_H_
#define COE_BACKENDS_HTTP_BODY_H_

#include <httplib.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace coe {

// A content receiver that appends a response body to *body, and refuses it (setting
// *too_large) as soon as it would pass max_bytes, at once when its Content-Length says
// so: a response past the bound is never held whole.
inline httplib::ContentReceiverWithProgress BoundedBody(std::string* body, bool* too_large, uint64_t max_bytes) {
  return [body, too_large, max_bytes](const char* data, size_t len, uint64_t, uint64_t total) {
    if (total > max_bytes || body->size() + len > max_bytes) {
      *too_large = true;
      return false;
    }
    body->append(data, len);
    return true;
  };
}

// Makes `pieces`, one after the other, the body of `req` without copying them: httplib
// copies a request's `body` member at every send (a 30 MiB chat request held twice per
// member), but not a content provider, which writes the pieces (they must outlive the
// send) as it goes. content_length_ and content_provider_ are the fields httplib's own
// provider overloads of Post fill (Debian 12's httplib 0.11).
inline void LendBody(httplib::Request* req, std::vector<std::string_view> pieces) {
  size_t total = 0;
  for (std::string_view p : pieces) total += p.size();
  req->content_length_ = total;
  req->content_provider_ = [pieces = std::move(pieces)](size_t offset, size_t length, httplib::DataSink& sink) {
    for (std::string_view p : pieces) {
      if (offset >= p.size()) {
        offset -= p.size();
        continue;
      }
      return sink.write(p.data() + offset, std::min({length, p.size() - offset, size_t{1} << 16}));
    }
    return false;
  };
}
inline void LendBody(httplib::Request* req, const std::string& body) { LendBody(req, {std::string_view(body)}); }

}  // namespace coe

#endif  // COE_BACKENDS_HTTP_BODY_H_
