// Internal: numbers written in decimal, read and compared exactly, never through a
// double (which keeps 15-17 significant digits: 12345678901234561 and
// 12345678901234562 are one double). Shared by the chat models' answer reader
// (backends) and the number match of a tier (core), so that both read the same number
// from the same text.
//
// A number, as written: an optional sign, then an integer part (digits, or one to
// three digits followed by comma-separated groups of three: "1,234,567"), an optional
// fraction ("." and digits), at least one digit in all, and an optional exponent
// ("e" or "E", an optional sign, digits; "6.02e23"). The last number of a text is the
// last one found scanning left to right, each number as long as it can be ("1.2.3"
// holds "1.2" and ".3", "1,2345" holds "1,234" and "5").
//
// Canonical form: the number's exact value, written with no sign for zero, "-" for a
// negative value, no leading zeros, no trailing fractional zeros and no point for an
// integer ("-001,234.500" -> "-1234.5", "-0.0" -> "0", "1.5e3" -> "1500"). Values
// whose plain form needs more than kMaxPlainZeros zeros beside their digits are written
// in scientific form, a digit, the other digits after a point, "e" and the exponent
// ("1e21", "-1.5e-30"). Two numbers are equal exactly when their canonical forms are.
//
// Work and memory are linear in the text; nothing recurses.
#ifndef COE_BASE_DECIMAL_H_
#define COE_BASE_DECIMAL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace coe {

// Zeros a canonical form writes out beside the digits before it switches to scientific
// form: 1e20 is "100000000000000000000", 1e21 is "1e21" (as JavaScript writes them).
inline constexpr int64_t kMaxPlainZeros = 20;
// Exponents whose magnitude is beyond this are out of range (a number reads as none).
inline constexpr int64_t kMaxDecimalExponent = 1'000'000'000'000'000;  // 1e15

// The last number written in `text`, as written ("so 1,234.50." -> "1,234.50"); empty
// when the text holds none.
std::string_view FindLastNumber(std::string_view text);

// The canonical form of `number`, which must be one number as FindLastNumber finds
// them; nullopt when it is not, or when its exponent is out of range.
std::optional<std::string> CanonicalDecimal(std::string_view number);

// The canonical form of the last number in `text`; nullopt when there is none (or its
// exponent is out of range).
std::optional<std::string> LastNumber(std::string_view text);

}  // namespace coe

#endif  // COE_BASE_DECIMAL_H_
