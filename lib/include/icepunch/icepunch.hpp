#pragma once

// Umbrella header: the whole public API.
#include <icepunch/agent.hpp>
#include <icepunch/candidate.hpp>
#include <icepunch/config.hpp>
#include <icepunch/event_loop.hpp>
#include <icepunch/log.hpp>
#include <icepunch/result.hpp>
#include <icepunch/security.hpp>
#include <icepunch/server_uri.hpp>
#include <icepunch/session_description.hpp>
#include <icepunch/version.hpp>
