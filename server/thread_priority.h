// Scoring runs at a lower CPU priority than the gRPC threads, so control calls (GetSession,
// ListSessions, health, uploads) stay fast while batches saturate every core: a busy server must
// still answer its orchestrator and its clients (issue 7: control RPCs < 50 ms during scoring).
#ifndef MUSC_SERVER_THREAD_PRIORITY_H_
#define MUSC_SERVER_THREAD_PRIORITY_H_

namespace musc {

// The nice value scoring threads take: CFS then gives a runnable gRPC thread (nice 0) about
// three times their share of a core, while scoring still gets every idle cycle.
inline constexpr int kScoringNice = 5;

// Sets the calling thread's nice value (Linux: per thread). Threads it creates afterwards —
// LibTorch's OpenMP team for this thread included — inherit it. Failure (e.g. a container
// without permission to change it) leaves the priority as it was: it is an optimisation only.
void SetCurrentThreadNice(int nice);

}  // namespace musc

#endif  // MUSC_SERVER_THREAD_PRIORITY_H_
