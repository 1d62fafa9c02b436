/* api_page() against scripted servers: every stop condition, and the
 * bounds that keep a listing from looping forever. */
#include <errno.h>
#include <string.h>

#include "api.h"
#include "check.h"

/* A scripted list server: `real` items with ids 0..real-1, and quirks. */
struct server {
	int real;	    /* items that exist */
	json_t *total;	    /* TotalCount to send (borrowed), NULL: none */
	int empty_from;	    /* offset from which pages come back empty, -1 */
	int insert_at_call; /* before this call, one item is inserted, -1 */
	int fail_at_call;   /* this call fails, -1 */
	int page_cap;	    /* maximum items in one page, 0: no cap */
	int calls;
	int max_limit_seen;
	int bad_requests; /* calls whose Filter was malformed */
};

static int fake_call(void *caller, const char *action, json_t *request,
		     json_t **response, struct api_error *error)
{
	struct server *server = caller;
	json_t *filter = json_object_get(request, "Filter");
	int64_t limit = -1;
	int64_t offset = -1;
	json_t *data;

	(void)action;
	server->calls++;
	if (api_json_integer(json_object_get(filter, "Limit"), &limit) < 0 ||
	    api_json_integer(json_object_get(filter, "Offset"), &offset) < 0 ||
	    limit < 1 || offset < 0) {
		server->bad_requests++;
		return -EINVAL;
	}
	if (limit > server->max_limit_seen)
		server->max_limit_seen = (int)limit;
	if (server->calls == server->fail_at_call) {
		memset(error, 0, sizeof(*error));
		error->errnum = EIO;
		strcpy(error->code, "InternalError");
		return -EIO;
	}
	if (server->calls == server->insert_at_call)
		server->real++;
	if (server->page_cap > 0 && limit > server->page_cap)
		limit = server->page_cap;
	data = json_array();
	for (int64_t i = offset; i < offset + limit && i < server->real; i++) {
		if (server->empty_from >= 0 && i >= server->empty_from)
			break;
		json_array_append_new(data, json_integer(i));
	}
	*response = json_object();
	json_object_set_new(*response, "Data", data);
	if (server->total)
		json_object_set(*response, "TotalCount", server->total);
	return 0;
}

struct seen {
	int count;
	int ids[1000];
	int stop_after;
};

static int count_item(json_t *item, void *ctx)
{
	struct seen *seen = ctx;

	if (seen->count < 1000)
		seen->ids[seen->count] = (int)json_integer_value(item);
	seen->count++;
	if (seen->stop_after && seen->count >= seen->stop_after)
		return -ECANCELED;
	return 0;
}

static struct server new_server(int real, json_t *total)
{
	struct server server = {
	    .real = real,
	    .total = total,
	    .empty_from = -1,
	    .insert_at_call = -1,
	    .fail_at_call = -1,
	};

	return server;
}

static int page(struct server *server, struct seen *seen, unsigned size,
		unsigned max_pages)
{
	struct api_error error;
	json_t *request = json_pack("{s:[s]}", "MemberId", "mem-1");
	int rc;

	rc = api_page(fake_call, server, "DescribeTaskLogList", request, size,
		      max_pages, count_item, seen, &error);
	/* The caller's request is copied, never changed. */
	CHECK(json_object_get(request, "Filter") == NULL);
	json_decref(request);
	return rc;
}

static void test_exact_total(void)
{
	json_t *total = json_integer(250);
	struct server server = new_server(250, total);
	struct seen seen = {0};

	CHECK_INT_EQ(page(&server, &seen, 100, 0), 0);
	CHECK_INT_EQ(seen.count, 250);
	CHECK_INT_EQ(server.calls, 3);
	CHECK_INT_EQ(server.max_limit_seen, 100);
	CHECK_INT_EQ(server.bad_requests, 0);
	for (int i = 0; i < 250; i++)
		CHECK_INT_EQ(seen.ids[i], i);
	json_decref(total);
}

static void test_total_multiple_of_page(void)
{
	json_t *total = json_integer(200);
	struct server server = new_server(200, total);
	struct seen seen = {0};

	/* TotalCount ends it without asking for an empty third page. */
	CHECK_INT_EQ(page(&server, &seen, 100, 0), 0);
	CHECK_INT_EQ(seen.count, 200);
	CHECK_INT_EQ(server.calls, 2);
	json_decref(total);
}

static void test_total_as_string(void)
{
	json_t *total = json_string("120");
	struct server server = new_server(120, total);
	struct seen seen = {0};

	CHECK_INT_EQ(page(&server, &seen, 100, 0), 0);
	CHECK_INT_EQ(seen.count, 120);
	CHECK_INT_EQ(server.calls, 2);
	json_decref(total);
}

static void test_total_too_large(void)
{
	json_t *total = json_integer(100000);
	struct server server = new_server(130, total);
	struct seen seen = {0};

	/* The short second page does not end it, since TotalCount promises
	 * more, but the empty third page does. */
	CHECK_INT_EQ(page(&server, &seen, 100, 0), 0);
	CHECK_INT_EQ(seen.count, 130);
	CHECK_INT_EQ(server.calls, 3);
	json_decref(total);
}

static void test_empty_page_early(void)
{
	json_t *total = json_integer(500);
	struct server server = new_server(500, total);
	struct seen seen = {0};

	server.empty_from = 200;
	CHECK_INT_EQ(page(&server, &seen, 100, 0), 0);
	CHECK_INT_EQ(seen.count, 200);
	CHECK_INT_EQ(server.calls, 3);
	json_decref(total);
}

static void test_missing_total(void)
{
	struct server server = new_server(150, NULL);
	struct seen seen = {0};

	CHECK_INT_EQ(page(&server, &seen, 100, 0), 0);
	CHECK_INT_EQ(seen.count, 150);
	CHECK_INT_EQ(server.calls, 2);
}

static void test_insert_between_pages(void)
{
	json_t *total = json_integer(200);
	struct server server = new_server(200, total);
	struct seen seen = {0};

	/* An item inserted before the second page shifts the list by one,
	 * so one id arrives twice; the caller removes duplicates by id. */
	server.insert_at_call = 2;
	CHECK_INT_EQ(page(&server, &seen, 100, 0), 0);
	CHECK_INT_EQ(seen.count, 200);
	CHECK_INT_EQ(server.calls, 2);
	json_decref(total);
}

static void test_endless_server(void)
{
	json_t *total = json_string("not a number");
	struct server server = new_server(1000000, total);
	struct seen seen = {0};

	/* Full pages forever and no usable TotalCount: max_pages ends it. */
	CHECK_INT_EQ(page(&server, &seen, 10, 7), 0);
	CHECK_INT_EQ(server.calls, 7);
	CHECK_INT_EQ(seen.count, 70);
	json_decref(total);
}

static void test_limit_capped(void)
{
	json_t *total = json_integer(300);
	struct server server = new_server(300, total);
	struct seen seen = {0};

	CHECK_INT_EQ(page(&server, &seen, 1000, 0), 0);
	CHECK_INT_EQ(server.max_limit_seen, 100);
	CHECK_INT_EQ(seen.count, 300);
	json_decref(total);
}

static void test_errors_stop(void)
{
	json_t *total = json_integer(300);
	struct server server = new_server(300, total);
	struct seen seen = {0};

	server.fail_at_call = 2;
	CHECK_INT_EQ(page(&server, &seen, 100, 0), -EIO);
	CHECK_INT_EQ(seen.count, 100);
	CHECK_INT_EQ(server.calls, 2);

	server = new_server(300, total);
	memset(&seen, 0, sizeof(seen));
	seen.stop_after = 150;
	CHECK_INT_EQ(page(&server, &seen, 100, 0), -ECANCELED);
	CHECK_INT_EQ(seen.count, 150);
	CHECK_INT_EQ(server.calls, 2);
	json_decref(total);
}

static void test_server_caps_limit(void)
{
	json_t *total = json_integer(23);
	struct server server = new_server(23, total);
	struct seen seen = {0};

	/* Pages of 5 although 100 were requested: TotalCount keeps it going
	 * through the short pages. */
	server.page_cap = 5;
	CHECK_INT_EQ(page(&server, &seen, 100, 0), 0);
	CHECK_INT_EQ(seen.count, 23);
	CHECK_INT_EQ(server.calls, 5);
	for (int i = 0; i < 23; i++)
		CHECK_INT_EQ(seen.ids[i], i);
	json_decref(total);
}

static void test_capped_without_total(void)
{
	struct server server = new_server(23, NULL);
	struct seen seen = {0};

	/* Without TotalCount a short page is the end of the list. */
	server.page_cap = 5;
	CHECK_INT_EQ(page(&server, &seen, 100, 0), 0);
	CHECK_INT_EQ(seen.count, 5);
	CHECK_INT_EQ(server.calls, 1);
}

static void test_total_as_real(void)
{
	json_t *total = json_real(60.0);
	struct server server = new_server(60, total);
	struct seen seen = {0};

	server.page_cap = 25;
	CHECK_INT_EQ(page(&server, &seen, 100, 0), 0);
	CHECK_INT_EQ(seen.count, 60);
	CHECK_INT_EQ(server.calls, 3);
	json_decref(total);
}

static void test_empty_list(void)
{
	json_t *total = json_integer(0);
	struct server server = new_server(0, total);
	struct seen seen = {0};

	CHECK_INT_EQ(page(&server, &seen, 100, 0), 0);
	CHECK_INT_EQ(seen.count, 0);
	CHECK_INT_EQ(server.calls, 1);
	json_decref(total);
}

int main(void)
{
	test_exact_total();
	test_total_multiple_of_page();
	test_total_as_string();
	test_total_too_large();
	test_empty_page_early();
	test_missing_total();
	test_insert_between_pages();
	test_endless_server();
	test_limit_capped();
	test_errors_stop();
	test_empty_list();
	test_server_caps_limit();
	test_capped_without_total();
	test_total_as_real();
	return check_finish();
}
