// Internal (openai backend): the body of one chat-completions request, made of the
// example's record without a copy of it. The record's string fields go into the
// prompt as the JSON text they already are (protocol/json_text.h checks the record):
// the body is a list of pieces, its own short text (the template's, the model's, ...)
// and views of the record, which httplib writes one after the other (LendBody). A
// 30 MiB message then costs no memory per member and attempt. The body holds what
// nlohmann's dump of {"logprobs", "max_tokens", "messages" (system, then user),
// "model", "seed" (with samples), "temperature"} holds; the prompt's text is the
// template filled as before: fields replaced by their string values (other values by
// their JSON text), "{{" and "}}" by braces.
#ifndef COE_BACKENDS_CHAT_BODY_H_
#define COE_BACKENDS_CHAT_BODY_H_

#include <string>
#include <string_view>
#include <vector>

#include "coe/catalogue.h"
#include "coe/status.h"

namespace coe {

struct ChatBody {
  std::string own;  // the body's text that is not the record's
  // The body, in order: ranges of `own` or of the record.
  struct Piece {
    bool in_record = false;
    size_t at = 0, size = 0;
  };
  std::vector<Piece> pieces;
  size_t prompt_bytes = 0;  // the filled prompt's UTF-8 bytes (for a cost estimate)

  // The pieces as views into `own` and `record` (both must outlive them).
  std::vector<std::string_view> Views(std::string_view record) const;
};

// The request of `spec` (its prompt, system, max_tokens, temperature, sample) to
// `model` for the example `record` (a JSON object's text). InvalidArgument "the input
// is not a JSON object" or "the prompt names field 'x', which the input lacks" (a
// missing or null field).
StatusOr<ChatBody> BuildChatBody(const ModelSpec& spec, const std::string& model, std::string_view record);

}  // namespace coe

#endif  // COE_BACKENDS_CHAT_BODY_H_
