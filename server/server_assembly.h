// Builds musc-server from a ServerConfig, serves until SIGTERM or SIGINT, and shuts down in the
// order that lets running work finish.
#ifndef MUSC_SERVER_SERVER_ASSEMBLY_H_
#define MUSC_SERVER_SERVER_ASSEMBLY_H_

#include "server/server_config.h"

namespace musc {

// Blocks until a termination signal has been handled, and returns the process's exit code: 0
// after a graceful shutdown, 1 when the server could not start (products, tokens, listening,
// spool, engines, recovery), 2 for an invalid configuration (TLS files, message size). Must be
// called before any other thread starts: it blocks SIGTERM and SIGINT for the whole process.
int RunServer(const ServerConfig& config);

}  // namespace musc

#endif  // MUSC_SERVER_SERVER_ASSEMBLY_H_
