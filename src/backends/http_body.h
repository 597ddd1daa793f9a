// Internal: the HTTP backends' bounded response body (remote, openai).
#ifndef COE_BACKENDS_HTTP_BODY_H_
#define COE_BACKENDS_HTTP_BODY_H_

#include <httplib.h>

#include <cstdint>
#include <string>

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

}  // namespace coe

#endif  // COE_BACKENDS_HTTP_BODY_H_
