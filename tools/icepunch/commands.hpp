#pragma once

namespace icepunch::cli {

// Each returns the process exit status: 0 success, 1 failure, 2 usage error.
int runDemo(int argc, char** argv);
int runLab(int argc, char** argv);
int runConnect(int argc, char** argv);
int runGather(int argc, char** argv);
int runTurnCheck(int argc, char** argv);
int runNat(int argc, char** argv);

} // namespace icepunch::cli
