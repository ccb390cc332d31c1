// SPDX-License-Identifier: MIT
/*
 * dwscale help [COMMAND]: the command list and the exit codes, or one command's usage. The text
 * comes from the command table in main.c, so a new command documents itself by being added.
 */
#include <stdio.h>

#include "cli/cli.h"
#include "dwscale/core.h"

static void print_overview(void)
{
	printf("dwscale %s - storage and I/O scaling layer of a data-warehouse storage node\n\n",
	       dw_version());
	printf("usage: dwscale COMMAND [ARGS...]\n"
	       "       dwscale --version\n"
	       "       dwscale help [COMMAND]\n\n"
	       "Commands:\n");
	for (const struct dw__cmd *c = dw__commands; c->name; c++)
		printf("  %-10s %s\n", c->name, c->summary);
	printf("\nRun 'dwscale help COMMAND' or 'dwscale COMMAND --help' for a command's options.\n"
	       "\n"
	       "Exit codes:\n"
	       "  %d  success\n"
	       "  %d  error\n"
	       "  %d  usage: bad command line or configuration\n"
	       "  %d  not found: the named subsystem, object or backup does not exist\n"
	       "  %d  unreachable: the server or a backend cannot be reached\n"
	       "  %d  refused: the server refused the request (bad token, invalid value)\n"
	       "\n"
	       "Environment:\n"
	       "  DWSCALE_DATA    data directory of 'dwscale serve' (default ./var)\n"
	       "  DWSCALE_SERVER  server URL for client commands (default http://127.0.0.1:7070)\n",
	       DW_EXIT_OK, DW_EXIT_ERROR, DW_EXIT_USAGE, DW_EXIT_NOTFOUND, DW_EXIT_UNREACHABLE,
	       DW_EXIT_REFUSED);
}

int dw__cmd_help(int argc, char **argv)
{
	const struct dw__cmd *cmd;

	if (argc < 2) {
		print_overview();
		return DW_EXIT_OK;
	}
	if (argc > 2)
		return dw__usage_error("help", "expected at most one COMMAND");
	cmd = dw__cmd_find(argv[1]);
	if (!cmd) {
		fprintf(stderr,
			"dwscale help: unknown command '%s'\nRun 'dwscale help' for the list of "
			"commands.\n",
			argv[1]);
		return DW_EXIT_USAGE;
	}
	dw__cmd_print_usage(cmd, false);
	return DW_EXIT_OK;
}
