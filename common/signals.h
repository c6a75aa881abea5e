// The signals a daemon (edged, hubd) takes synchronously with sigwait: SIGTERM and SIGINT
// (stop), SIGHUP (reload). Blocked before any thread starts, so that no I/O or worker thread
// receives them and the one waiting thread sees every one.
#pragma once

#include <csignal>

namespace freshsync {

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and the threads it starts later);
// returns the set to pass to sigwait. Call from main before any thread starts.
sigset_t BlockDaemonSignals();

}  // namespace freshsync
