// coe/files.h: reading files, the same way everywhere (base layer).
//
// Errors name the path: NotFound when it cannot be opened, InvalidArgument when it is a
// directory where a file is expected, Internal for a read error.
// Thread safety: pure functions.
#ifndef COE_FILES_H_
#define COE_FILES_H_

#include <string>
#include <string_view>

#include "coe/status.h"

namespace coe {

// Reads a whole file.
StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `text` to `path` (created or truncated). InvalidArgument naming the path and
// the system's reason when it cannot be opened or written in full.
Status WriteStringToFile(const std::string& path, std::string_view text);
// Appends `text` to `path` (created when missing) and flushes it. Errors as above.
Status AppendStringToFile(const std::string& path, std::string_view text);
// Replaces `path` with `text` atomically: written beside it, then renamed over it, so a
// reader (or a crash) sees the old file or the new one, never a mixture.
Status ReplaceFile(const std::string& path, std::string_view text);

// True when `path` names an image file by its extension (png, jpg, jpeg, bmp, pgm,
// ppm, tif, tiff, webp; any case).
bool IsImagePath(const std::string& path);

}  // namespace coe

#endif  // COE_FILES_H_
