// SPDX-License-Identifier: MIT
/*
 * The dwscale command: a table of subcommands and the dispatcher over it.
 *
 * Each command lives in its own src/cli/cmd_<name>.c (serve in src/server/serve.c) and is one
 * line in dw__commands below, so adding the subsystem commands (object, db, io, backup, fabric)
 * touches nothing else here. The dispatcher handles only what is common to all commands: the
 * global --version and --help, `dwscale COMMAND --help`, and unknown commands (a usage error with
 * a hint, exit 2).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "dwscale/core.h"

const struct dw__cmd dw__commands[] = {
	{ "serve", dw__cmd_serve, "run the storage node's HTTP daemon",
	  "usage: dwscale serve [--config FILE] [--listen ADDR:PORT] [--data DIR]\n"
	  "\n"
	  "Run the HTTP daemon: /healthz, /metrics (Prometheus text), /v1/subsystems and\n"
	  "PUT /v1/subsystems/NAME/limits (needs 'Authorization: Bearer TOKEN' with the token in\n"
	  "DIR/admin.token), objects streamed both ways at /v1/objects/KEY (PUT, GET with Range,\n"
	  "HEAD, DELETE), listings at /v1/objects?prefix=&limit=&page_token= and\n"
	  "/v1/db/health. Stops cleanly on SIGTERM or SIGINT.\n"
	  "\n"
	  "  GET  /v1/io             each device's I/O scheduler: class, depth, backend, probe\n"
	  "                          results, state, and per tier queued, in flight, completed,\n"
	  "                          bytes, p50/p99 latency, longest wait\n"
	  "  PUT  /v1/io/quotas/C    one caller's quota (admin token): {\"bytes\": N, \"ops\": N}\n"
	  "                          per window, 0 = unlimited; GET shows its use\n"
	  "  POST /v1/backups        queue backups (admin token): {\"sources\": [\"/dir\", ...],\n"
	  "                          \"type\": \"full\"|\"incremental\"|\"auto\"}; 202 with job "
	  "ids\n"
	  "  GET  /v1/backups        the repository's backups and chains ([backup] repo)\n"
	  "  GET  /v1/backups/jobs   job records: state, counters, checkpoint\n"
	  "  GET  /v1/fabric/nodes   the fabric node's view, as 'dwscale fabric agent --http'\n"
	  "  GET  /v1/fabric/events  its recent membership events ([fabric] section)\n"
	  "A subsystem that is not configured answers 404 {\"error\": \"not_configured\"}.\n"
	  "\n"
	  "  --config FILE       INI configuration ([server] listen, data, max_body,\n"
	  "                      admin_token_file; [log] level; [cache] max_entries, max_bytes, "
	  "ttl;\n"
	  "                      [db] strategies = NAME=URI, ...; [backup] repo = DIR;\n"
	  "                      [fabric] bind, key_file, join, topology, mode, interval,\n"
	  "                      missed, node_id, as the options of 'dwscale fabric agent';\n"
	  "                      without node_id the id is kept in DIR/fabric.id;\n"
	  "                      [io] the io limits by name, durations without their unit\n"
	  "                      suffix: engine (auto|io_uring|psync), depth (0 = by class),\n"
	  "                      weight_high/_normal/_low, deadline_high/_normal/_low (50ms,\n"
	  "                      250ms, 500ms), low_cap, high_linger, reprobe (5m; 0 = never),\n"
	  "                      max_queued, bp_warning/_critical/_shedding, bp_hysteresis,\n"
	  "                      quota_window (1h), quota_bytes, quota_ops, quota_demote)\n"
	  "  --listen ADDR:PORT  address to listen on (default 127.0.0.1:7070; [::1]:PORT for "
	  "IPv6)\n"
	  "  --data DIR          data directory, created 0700 if missing (default $DWSCALE_DATA "
	  "or\n"
	  "                      ./var): holds store.db, token.secret and admin.token\n"
	  "\n"
	  "Command-line flags override the configuration file.\n" },
	{ "status", dw__cmd_status, "show each subsystem's state, metrics and limits",
	  "usage: dwscale status [--server URL] [--json]\n"
	  "\n"
	  "Ask a running 'dwscale serve' for its subsystems and print a table of each one's\n"
	  "state, key metrics and limits.\n"
	  "\n"
	  "  --server URL  the daemon to ask (default $DWSCALE_SERVER or http://127.0.0.1:7070)\n"
	  "  --json        print the server's JSON document as it is\n" },
	{ "object", dw__cmd_object, "put, get, stat, remove and list stored objects",
	  "usage: dwscale object put KEY [FILE|-] [--content-type T] [--meta JSON] [--json]\n"
	  "       dwscale object get KEY [-o FILE|-]\n"
	  "       dwscale object stat KEY\n"
	  "       dwscale object rm KEY\n"
	  "       dwscale object ls [--prefix P] [--limit N] [--page-token T] [--all] [--json]\n"
	  "\n"
	  "Objects live in the node's database storage (default: SQLite at DATA/objects.db).\n"
	  "put reads FILE or stdin to its end and publishes the object atomically; get writes\n"
	  "stdout, or FILE through a temporary file renamed into place once complete and\n"
	  "checked against its SHA-256 (a device or FIFO, such as /dev/null, is written in\n"
	  "place; a symlink's target is replaced, not the link). ls prints one page (default 100, "
	  "at most 1000) and, on\n"
	  "stderr, the --page-token for the next; --all streams every match; --json prints one\n"
	  "JSON document per page (one JSON object per line with --all).\n"
	  "\n"
	  "  --db NAME|URI   a strategy named in the config, or a URI (sqlite:PATH,\n"
	  "                  postgresql://...) used alone\n"
	  "  --data DIR      data directory (default $DWSCALE_DATA or ./var)\n"
	  "  --config FILE   INI configuration; [db] strategies = NAME=URI, ...\n"
	  "\n"
	  "Exit status: 0 ok, 2 bad key/token/usage, 3 no such key, 4 backend unreachable.\n" },
	{ "db", dw__cmd_db, "check the health of every database strategy",
	  "usage: dwscale db health [--timeout SECONDS] [--json] [--db NAME|URI] [--data DIR]\n"
	  "                         [--config FILE]\n"
	  "\n"
	  "Check every strategy at once; one that does not answer within the timeout (default\n"
	  "5 s) is reported as timed out. Exit status 0 if all are healthy, 4 otherwise.\n" },
	{ "backup", dw__cmd_backup,
	  "back up directory trees: full and incremental backups in chains",
	  "usage: dwscale backup init REPO [--block-size SIZE] [--encrypt --key-file F]\n"
	  "       dwscale backup keygen [-o FILE]\n"
	  "       dwscale backup create SRC... --repo REPO [--full|--incremental] [--json]\n"
	  "                     [--zstd-level N] [--threads N] [--jobs N] [--ignore-inode-ctime]\n"
	  "                     [--checkpoint SIZE] [--no-resume] [--no-io-scheduler]\n"
	  "       dwscale backup list --repo REPO [--json]\n"
	  "       dwscale backup restore ID|latest --repo REPO --target DIR [--path P] [--json]\n"
	  "                      [--threads N] [--no-owners] [--no-io-scheduler]\n"
	  "       dwscale backup check --repo REPO [--read-data] [--json]\n"
	  "       dwscale backup prune --repo REPO [--keep-last N] [--max-age DUR] [--max-size "
	  "SIZE]\n"
	  "                    [--dry-run] [--json]\n"
	  "       dwscale backup recover --repo REPO [--clean] [--json]\n"
	  "  every command on an encrypted repository: --key-file F (or DWSCALE_BACKUP_KEY_FILE)\n"
	  "\n"
	  "create backs up each SRC as its own job, concurrently under a limit that follows disk\n"
	  "utilisation: it starts at 4 per disk and steps down while the disks read busy and "
	  "fewer\n"
	  "jobs do as well (--jobs N fixes it); --threads N sets the hashing and compression\n"
	  "threads (default one per CPU). Without --full or --incremental a source's first backup\n"
	  "is full and the next ones extend its chain. --ignore-inode-ctime detects changes by "
	  "size\n"
	  "and mtime only (sources on snapshots or copies). Reads and pack writes go through the\n"
	  "I/O scheduler at Low priority (--no-io-scheduler: plain I/O). A create checkpoints "
	  "every\n"
	  "--checkpoint bytes (default 64M, or DWSCALE_BACKUP_CHECKPOINT); a killed one resumes\n"
	  "from its last checkpoint when run again (--no-resume starts over). restore writes into\n"
	  "an empty or new DIR, with one file writer per CPU (--threads N). check verifies\n"
	  "manifests and references, and with --read-data every stored block's SHA-256. prune\n"
	  "removes whole chains, oldest first, never a source's newest (defaults: --keep-last 30\n"
	  "--max-age 90d --max-size 100G; 0 turns a rule off); --dry-run prints what it would\n"
	  "remove, why, and the exact bytes. recover resumes the backups killed runs left and\n"
	  "removes what cannot be resumed (--clean: remove only).\n"
	  "The repository lock is an flock(): it never needs a manual unlock.\n"
	  "init --encrypt makes a repository whose packs, manifests and checkpoints are sealed\n"
	  "with AES-256-GCM under the key in F (make one with keygen; keep a copy: without it\n"
	  "nothing can be restored); a wrong or missing key is refused before any work.\n"
	  "\n"
	  "Exit status: 0 ok, 1 failure or damage found, 2 usage, 3 no such backup or "
	  "repository.\n" },
	{ "io", dw__cmd_io, "probe devices and benchmark the I/O scheduler",
	  "usage: dwscale io probe PATH [--calibrate [--step-ms MS] [--size SIZE]] [--store URI]\n"
	  "                             [--json]\n"
	  "       dwscale io bench FILE [--rw MODE] [--bs 4k] [--depth N] [--seconds S]\n"
	  "                             [--size SIZE] [--direct] [--engine auto|io_uring|psync]\n"
	  "                             [--mix SPEC] [--overwrite] [--set NAME=VALUE] [--json]\n"
	  "\n"
	  "probe: the device under PATH, its class and the queue depth used and why, whether\n"
	  "io_uring works here (or the errno that says why not), and O_DIRECT with its alignment.\n"
	  "--calibrate measures 4k random-read IOPS at depths 1..256 (--step-ms each, 1..60000,\n"
	  "default 1000) and picks the smallest depth within 90% of the best; with --store (e.g.\n"
	  "sqlite:DIR/store.db) it is stored for the device and used instead of the class depth.\n"
	  "\n"
	  "bench: drive the scheduler on FILE for --seconds (1..3600, default 10) and print\n"
	  "per job IOPS, MiB/s, latency p50/p99/p99.9 and longest wait. Bench never changes data\n"
	  "FILE already holds unless told to: a new FILE is laid out to --size (default 256M);\n"
	  "read jobs use an existing FILE as it is and refuse one smaller than --size; write\n"
	  "jobs (randwrite, write) overwrite, so on an existing FILE they need --overwrite, and\n"
	  "then a FILE smaller than --size is extended from its end.\n"
	  "  --rw MODE         randread (default), randwrite, read or write\n"
	  "  --bs SIZE         block size (default 4k, at most 16M); with --direct a multiple of\n"
	  "                    the O_DIRECT alignment io probe reports\n"
	  "  --depth N         scheduler depth 1..1024 (default: by device class) and, without\n"
	  "                    --mix, the job's iodepth\n"
	  "  --mix SPEC        several jobs at once, TIER:RW:BS:IODEPTH separated by commas,\n"
	  "                    e.g. high:randread:4k:1,low:read:128k:32 (not with --rw or --bs)\n"
	  "  --overwrite       let write jobs write over an existing FILE's data\n"
	  "  --set NAME=VALUE  set an io limit first (as in /v1/subsystems/io/limits)\n" },
	{ "fabric", dw__cmd_fabric, "heartbeat membership: keygen, agent, members, sim",
	  "usage: dwscale fabric keygen [-o FILE]\n"
	  "       dwscale fabric agent --bind ADDR:PORT --key-file F [--join ADDR:PORT,...]\n"
	  "                            [--topology star|mesh|federated] [--mode auto|recommend]\n"
	  "                            [--interval DUR] [--missed K] [--node-id ID]\n"
	  "                            [--http ADDR:PORT] [--drop-rate P]\n"
	  "       dwscale fabric members --agent URL [--json]\n"
	  "       dwscale fabric sim [--nodes N] [--topology T] [--mode M] [--seconds S]\n"
	  "                          [--interval DUR] [--missed K] [--loss P] [--kill K]\n"
	  "                          [--pause K:DUR] [--restart K] [--grow-to N] [--seed S] "
	  "[--json]\n"
	  "\n"
	  "keygen prints a cluster key line (or writes FILE, mode 0600). A key file holds one key\n"
	  "per line, \"<id> <64 hex>\"; the first is used to send, all are accepted.\n"
	  "\n"
	  "agent runs one node over UDP and prints membership events as JSON lines on stdout.\n"
	  "  --join         seeds to join through (any member); none starts a new cluster\n"
	  "  --topology     for a new cluster (default mesh); --mode auto switches the whole\n"
	  "                 cluster at the thresholds, recommend only raises an event (default "
	  "auto)\n"
	  "  --interval     heartbeat interval H (default 15s; 10ms..1h); --missed K (default 3):\n"
	  "                 a node is removed K*H after its last sign of life\n"
	  "  --node-id      default: derived from --bind, so a restarted agent is the same member\n"
	  "  --http         serves GET /v1/fabric/nodes and /v1/fabric/events\n"
	  "  --drop-rate    drops that share of packets both ways (for tests)\n"
	  "  SIGHUP rereads the key file. Rotate keys without downtime in three steps, each on\n"
	  "  every node before the next: add the new key after the old, put it first, drop the\n"
	  "  old one.\n"
	  "\n"
	  "members prints an agent's view (--agent http://ADDR:PORT of its --http).\n"
	  "\n"
	  "sim runs the deterministic simulator (same seed, same trace hash; default 10 nodes,\n"
	  "600 s, seed 1) and prints detection times, false removals, messages per node per\n"
	  "interval by role, convergence and switches.\n" },
	{ "help", dw__cmd_help, "show help for dwscale or one command",
	  "usage: dwscale help [COMMAND]\n" },
	{ NULL, NULL, NULL, NULL },
};

const struct dw__cmd *dw__cmd_find(const char *name)
{
	for (const struct dw__cmd *c = dw__commands; c->name; c++) {
		if (strcmp(c->name, name) == 0)
			return c;
	}
	return NULL;
}

void dw__cmd_print_usage(const struct dw__cmd *cmd, bool to_stderr)
{
	fputs(cmd->usage, to_stderr ? stderr : stdout);
}

/* The command whose name is closest (at most 2 edits) to s, for "did you mean". */
static const char *closest_command(const char *s)
{
	const char *best = NULL;
	size_t best_d = 3;

	for (const struct dw__cmd *c = dw__commands; c->name; c++) {
		size_t n = strlen(s), m = strlen(c->name), prev[33], cur[33];

		if (n > 32 || m > 32)
			continue;
		for (size_t j = 0; j <= m; j++)
			prev[j] = j;
		for (size_t i = 1; i <= n; i++) {
			cur[0] = i;
			for (size_t j = 1; j <= m; j++) {
				size_t sub = prev[j - 1] + (s[i - 1] != c->name[j - 1]);
				size_t del = prev[j] + 1, ins = cur[j - 1] + 1;

				cur[j] = sub < del ? (sub < ins ? sub : ins)
						   : (del < ins ? del : ins);
			}
			memcpy(prev, cur, sizeof(prev));
		}
		if (prev[m] < best_d) {
			best_d = prev[m];
			best = c->name;
		}
	}
	return best;
}

int main(int argc, char **argv)
{
	const struct dw__cmd *cmd;

	if (argc < 2) {
		fprintf(stderr, "usage: dwscale COMMAND [ARGS...]\n"
				"Run 'dwscale help' for the list of commands.\n");
		return DW_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("dwscale %s\n", dw_version());
		return DW_EXIT_OK;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
		return dw__cmd_help(1, (char *[]){ "help", NULL });
	if (argv[1][0] == '-') {
		fprintf(stderr,
			"dwscale: unknown option '%s'\nRun 'dwscale help' for the list of "
			"commands.\n",
			argv[1]);
		return DW_EXIT_USAGE;
	}
	cmd = dw__cmd_find(argv[1]);
	if (!cmd) {
		const char *near = closest_command(argv[1]);

		fprintf(stderr, "dwscale: unknown command '%s'\n", argv[1]);
		if (near)
			fprintf(stderr, "Did you mean 'dwscale %s'?\n", near);
		fprintf(stderr, "Run 'dwscale help' for the list of commands.\n");
		return DW_EXIT_USAGE;
	}
	if (cmd->fn != dw__cmd_help && dw__wants_help(argc - 1, argv + 1)) {
		dw__cmd_print_usage(cmd, false);
		return DW_EXIT_OK;
	}
	return cmd->fn(argc - 1, argv + 1);
}
