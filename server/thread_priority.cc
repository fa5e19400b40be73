#include "server/thread_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace musc {

void SetCurrentThreadNice(int nice) {
  // On Linux, PRIO_PROCESS with a thread id changes that one thread (a POSIX deviation that the
  // man page documents), which is exactly what is wanted here.
  const id_t tid = static_cast<id_t>(syscall(SYS_gettid));
  setpriority(PRIO_PROCESS, tid, nice);
}

}  // namespace musc
