// Internal (openai backend): the body of one chat-completions request, made of the
// example's record without a copy of it. The record's strings go into the body as the
// JSON text they already are (protocol/json_text.h checks the record): the body is a
// list of pieces, its own short text (the template's, the model's, ...) and views of
// the record, which httplib writes one after the other (LendBody). A 30 MiB message
// then costs no memory per member and attempt.
//
// The body: {"logprobs": true, "max_tokens", "messages", "model", "seed" (with
// samples), "temperature"} and the record's parameters. Its messages: the catalogue's
// `system` (when set) as a system message, then either
//  - template mode: one user message, the prompt template filled with the record's
//    fields (strings by their values, other values by their JSON text; "{{" and "}}"
//    are braces), or
//  - messages mode (BackendOptions::messages): the record's `messages`, as they are.
// The record's parameters (its member kRecordParameters, coe/protocol.h: what a chat
// request gave) are sent as their JSON text, but those the catalogue wins (pinned
// ones, with `pin`; a sample's seed; logprobs, always true here, as coe reads the
// answer's probability from them); the catalogue's max_tokens and temperature are
// sent when the record has none of its own.
#ifndef COE_BACKENDS_CHAT_BODY_H_
#define COE_BACKENDS_CHAT_BODY_H_

#include <map>
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
  size_t prompt_bytes = 0;  // the prompt's UTF-8 bytes, about (for a cost estimate)
  // What the record's parameters ask of the reply: a JSON reply (response_format
  // json_object or json_schema: its answer is the reply's canonical JSON), and the
  // choice's logprobs kept for the client (logprobs: true).
  bool json_reply = false;
  bool keep_logprobs = false;

  // The pieces as views into `own` and `record` (both must outlive them).
  std::vector<std::string_view> Views(std::string_view record) const;
};

// The request of `spec` to `model` for the example `record` (a JSON object's text), in
// messages mode when `messages`. InvalidArgument "the input is not a JSON object", "the
// prompt names field 'x', which the input lacks" (a missing or null field), "the input
// has no 'messages' ..." (messages mode), or a kRecordParameters that is no object.
StatusOr<ChatBody> BuildChatBody(const ModelSpec& spec, const std::string& model, std::string_view record,
                                 bool messages = false);

// The parameters whose value the catalogue of `spec` fixes (BackendInfo::pinned): its
// `pin`, and a sample's seed, by name, as JSON text.
std::map<std::string, std::string> PinnedParameters(const ModelSpec& spec);

}  // namespace coe

#endif  // COE_BACKENDS_CHAT_BODY_H_
