// Raises small thread-stack requests to 1 MiB, process-wide.
//
// Why: Debian's civetweb (the HTTP server inside prometheus-cpp's Exposer) creates its threads
// with a fixed 100 KiB stack. Once LibTorch, OpenBLAS and glog are loaded, their static
// thread-local storage (~106 KiB) is carved out of every new thread's stack, so those
// pthread_create calls fail and the Exposer reports a misleading "null context when
// constructing CivetServer" (see ../shared/reference/TOOLCHAIN.md, pitfall 3). Defining the
// symbol in the executable interposes it for every shared library; the linker is told to export
// it (server/CMakeLists.txt) so civetweb's calls resolve here.
#include <dlfcn.h>
#include <pthread.h>

#include <cstddef>

namespace {

constexpr size_t kMinimumThreadStackBytes = size_t{1} << 20;

using SetStackSizeFn = int (*)(pthread_attr_t*, size_t);

SetStackSizeFn RealSetStackSize() {
  static const SetStackSizeFn real =
      reinterpret_cast<SetStackSizeFn>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  return real;
}

}  // namespace

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t stack_size) {
  const SetStackSizeFn real = RealSetStackSize();
  if (real == nullptr) return 0;  // Unreachable with glibc; keeps the default stack size.
  return real(attr, stack_size < kMinimumThreadStackBytes ? kMinimumThreadStackBytes : stack_size);
}
