// coe/paths.h: where coe finds its own files (the bundled model zoo, the build tree).
//
// No path is compiled in: a build tree is found from the running executable, so the
// same object files serve any checkout (and ccache reuses them across folders).
// Thread safety: every function is safe to call from any thread.
#ifndef COE_PATHS_H_
#define COE_PATHS_H_

#include <string>

namespace coe {

// The folder of the running executable ("" when /proc/self/exe cannot be read).
std::string ExecutableDir();

// The source folder of the CMake build tree the running executable was built in (read
// from CMakeCache.txt beside it), or "" when it does not live in a build tree.
std::string BuildTreeSourceDir();

// The bundled Fashion-MNIST zoo's catalogue: $COE_ZOO when set, else
// <source>/models/zoo/catalogue.toml of the build tree, else the installed copy under
// <prefix>/share/coe/zoo/. The path returned may not exist (the caller reports it).
std::string BundledZooCatalogue();

}  // namespace coe

#endif  // COE_PATHS_H_
