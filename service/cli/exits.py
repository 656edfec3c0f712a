"""Exit codes scripts can rely on."""

OK = 0
PROBLEMS = 1  # the command ran and found problems (invalid file, failed deliveries, ...)
USAGE = 2  # bad arguments or configuration
UNREACHABLE = 3  # Herald could not be reached, or answered 5xx
REFUSED = 4  # Herald refused the token (401/403)
REJECTED = 5  # Herald rejected the request (404, 409, 422, ...): the message says why
STILL_SENDING = 6  # `deliveries watch --for` ran out while deliveries were still pending or sending
