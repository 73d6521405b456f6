// Agents against a real coturn started by the fixture on 127.0.0.1.
#include "agent_harness.hpp"
#include "coturn_process.hpp"

#include <gtest/gtest.h>

namespace icepunch::test {
namespace {} // namespace
} // namespace icepunch::test
