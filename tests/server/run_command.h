// Runs a shell command for a test (a real musc-client, promtool, openssl, …) and collects what it
// printed, stdout and stderr together.
#ifndef MUSC_TESTS_SERVER_RUN_COMMAND_H_
#define MUSC_TESTS_SERVER_RUN_COMMAND_H_

#include <string>

namespace musc::testing {

struct CommandResult {
  int exit_code = -1;  // -1 when the command could not run or did not exit normally.
  std::string output;
};

CommandResult RunCommand(const std::string& command);

}  // namespace musc::testing

#endif  // MUSC_TESTS_SERVER_RUN_COMMAND_H_
