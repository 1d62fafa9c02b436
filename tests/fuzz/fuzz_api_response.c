/* Fuzzes api_parse_response() with response bodies under several HTTP
 * statuses, and checks that a success returns an object and a failure a
 * positive errno with NUL-terminated error fields. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "fuzz.h"

static const long statuses[] = {200, 400, 403, 500, 502};

static void check_terminated(const char *text, size_t size)
{
	FUZZ_CHECK(memchr(text, '\0', size) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		struct api_error error;
		json_t *response = (json_t *)1;
		bool retryable = true;
		char line[1024];
		int rc;

		rc = api_parse_response((const char *)data, size, statuses[i],
					&response, &error, &retryable);
		if (rc == 0) {
			FUZZ_CHECK(json_is_object(response));
			FUZZ_CHECK(statuses[i] == 200);
			FUZZ_CHECK(!retryable);
			json_decref(response);
			continue;
		}
		FUZZ_CHECK(response == NULL);
		FUZZ_CHECK(rc < 0);
		FUZZ_CHECK(error.errnum == -rc);
		check_terminated(error.code, sizeof(error.code));
		check_terminated(error.message, sizeof(error.message));
		check_terminated(error.request_id, sizeof(error.request_id));
		api_format_error(&error, line, sizeof(line));
		check_terminated(line, sizeof(line));
	}
	return 0;
}
