// coe/status.h: errors as values.
//
// Every fallible function in coe's public API returns a Status or a StatusOr<T>;
// no exception crosses include/coe/. A Status is either OK or carries a code and a
// message that names what was wrong and where (file, line, column, field).
//
// Codes:
//   kInvalidArgument  bad input from the user: a malformed file, flag or request.
//                     The `coe` command exits with code 2 on these.
//   kNotFound         a named thing (file, model, column) does not exist.
//   kFailedPrecondition  input is well formed but cannot be used as asked
//                     (e.g. a score rule on recordings without scores).
//   kUnavailable      a transient failure (a remote endpoint is unreachable).
//   kDeadlineExceeded a call ran past its deadline.
//   kInternal         a failure of a library coe calls (OpenCV, the OS).
//
// Thread safety: Status and StatusOr are values; distinct objects may be used from
// distinct threads freely.
#ifndef COE_STATUS_H_
#define COE_STATUS_H_

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace coe {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kFailedPrecondition,
  kUnavailable,
  kDeadlineExceeded,
  kResourceExhausted,
  kInternal,
};

class [[nodiscard]] Status {
 public:
  // An OK status.
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "invalid argument: <message>", or "OK".
  std::string ToString() const;

  // Returns a copy whose message is "<prefix>: <message>"; OK stays OK.
  Status WithPrefix(std::string_view prefix) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

Status InvalidArgumentError(std::string message);
Status NotFoundError(std::string message);
Status FailedPreconditionError(std::string message);
Status UnavailableError(std::string message);
Status DeadlineExceededError(std::string message);
Status ResourceExhaustedError(std::string message);
Status InternalError(std::string message);

// Either a value of type T or a non-OK Status. Accessing the value of a StatusOr
// that holds an error is a bug (asserts).
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  StatusOr(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok() && "StatusOr built from an OK Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  const T& value() const& {
    assert(ok());
    return std::get<T>(v_);
  }
  T& value() & {
    assert(ok());
    return std::get<T>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(v_));
  }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

 private:
  std::variant<T, Status> v_;
};

// `text` fit for a terminal or log: control bytes (NUL included, which would cut a
// C string) and DEL become \xNN; newlines and tabs stay.
std::string PrintableText(std::string_view text);

}  // namespace coe

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define COE_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::coe::Status coe_status_ = (expr);        \
    if (!coe_status_.ok()) return coe_status_; \
  } while (0)

#define COE_CONCAT_INNER_(a, b) a##b
#define COE_CONCAT_(a, b) COE_CONCAT_INNER_(a, b)
// `COE_ASSIGN_OR_RETURN(auto x, F());` declares x from F()'s value or returns its error.
#define COE_ASSIGN_OR_RETURN(lhs, expr) COE_ASSIGN_OR_RETURN_IMPL_(COE_CONCAT_(coe_statusor_, __LINE__), lhs, expr)
#define COE_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

#endif  // COE_STATUS_H_
