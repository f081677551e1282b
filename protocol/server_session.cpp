#include "protocol/server_session.h"
