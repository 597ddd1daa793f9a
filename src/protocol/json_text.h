// Internal (protocol layer): JSON text checked and taken apart without building it.
//
// nlohmann's parser copies every string it reads into a buffer of its own, grown by
// doubling: a 30 MiB chat message costs 60 MiB more in each thread that reads it,
// memory malloc's per-thread arenas then keep apart. Chat requests, and the records
// that carry their messages to the chat models, are read here instead: Valid checks
// the grammar (RFC 8259, strings in UTF-8, as nlohmann accepts it) keeping nothing,
// and the others hand out the text of values, so that a string can be passed on as
// the JSON text it already is. Hand-written for that reason; short strings (keys,
// model names) are still decoded by nlohmann.
//
// Thread safety: pure functions. Views point into the text given.
#ifndef COE_PROTOCOL_JSON_TEXT_H_
#define COE_PROTOCOL_JSON_TEXT_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coe::json_text {

// Whether `text` is one JSON value (whitespace around it allowed), as
// nlohmann::json::accept decides: strings in well-formed UTF-8, \u escapes with
// surrogates in pairs; any nesting depth.
bool Valid(std::string_view text);

// For Valid text only. The members of the object `text` (keys decoded) with the text
// of each value; a repeated key keeps its last value (as nlohmann's DOM). Not an
// object: empty.
std::map<std::string, std::string_view> Members(std::string_view text);
// The text of each element of the array `text`; not an array: empty.
std::vector<std::string_view> Elements(std::string_view text);
// A value's kind by its text: '{', '[', '"', 'n' (null), 't'/'f', or '0' for a number.
char Kind(std::string_view value);
// The string `value` (a string's text) decodes to (nlohmann: for short ones).
std::string Decode(std::string_view value);
// The UTF-8 bytes the string `value` decodes to, without decoding it.
size_t DecodedSize(std::string_view value);
// Whether `s` is well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or code
// points past U+10FFFF), as nlohmann decodes it.
bool IsUtf8(std::string_view s);
// The canonical text of the JSON value `text`, by which coe compares JSON answers (a
// tool call's arguments, a JSON reply): object keys sorted by their UTF-8 bytes (a
// repeated key keeps its last value), no whitespace, strings as nlohmann writes them
// (so "\u0041" = "A"), whole numbers within 2^53 as integers (1.0 = 1, -0.0 = 0), other
// numbers in the shortest form that reads back. nullopt when `text` is not one JSON
// value, nests deeper than kMaxCanonicalDepth, or holds a number past a double's range.
inline constexpr int kMaxCanonicalDepth = 256;
std::optional<std::string> Canonical(std::string_view text);
// The inside of the string `value`: its text without the quotes (still escaped).
inline std::string_view Inside(std::string_view value) { return value.substr(1, value.size() - 2); }

}  // namespace coe::json_text

#endif  // COE_PROTOCOL_JSON_TEXT_H_
