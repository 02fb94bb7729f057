/* SPDX-License-Identifier: Apache-2.0 */
/* gpuwarden help [COMMAND] | help --man | complete: the top-level help, the
 * gpuwarden(1) page and the bash completion, all three printed from the
 * command table and the option tables the parser uses (options.h), so they
 * cannot name an option the CLI does not take, nor miss one. The build
 * writes the installed gpuwarden.1 and bash completion with these. */
#include <gpuwarden/common.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "options.h"

/* The spec whose global option texts the top-level help and the man page
 * show: every global, with the per-command defaults described. */
static const cli_spec main_spec = {
    .name = "",
    .globals = CLI_G_REMOTE,
    .formats = "table json value yaml",
    .format_help = "output format: table (the default), json, value or yaml;\n"
                   "--json is -f json (see output formats)",
    .endpoint_help = "the daemon's endpoint (ipc://PATH or tcp://HOST:PORT);\n"
                     "default $" CLI_ENDPOINT_ENV " (events: $" CLI_EVENTS_ENDPOINT_ENV "),\n"
                     "else the read, admin or events endpoint under /run/gpuwarden",
};

void cli_main_usage(FILE *f)
{
    fprintf(f, "usage: gpuwarden [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS...]\n"
               "       gpuwarden help [COMMAND]    (or gpuwarden COMMAND --help)\n\ncommands:\n");
    for (const gw_cli_command *c = gw_cli_commands; c->name; c++)
        fprintf(f, "  %-12s %s\n", c->name, c->summary);
    fprintf(f, "\nglobal options, before or after the command (each command's --help lists\n"
               "those it takes):\n");
    char buf[512];
    for (const cli_opt *g = cli_global_options; g->name; g++)
        cli_usage_option(f, g, cli_global_help(&main_spec, g, buf, sizeof buf));
    fprintf(f, "  --version          the version\n"
               "\noutput formats:\n%s\n", cli_formats_text);
    fprintf(f, "\nexit codes: 0 ok, 1 failure, 2 usage, 3 device errors (discover),\n"
               "            4 daemon unreachable, 5 refused by the daemon\n");
}

/* ---- gpuwarden(1) -------------------------------------------------------- */

/* Text for roff: backslashes and hyphens escaped, a control character at a
 * line's start defused, `code` in bold. A line that starts with blanks stays
 * a line of its own (roff breaks there), as in --help. */
static void roff(FILE *f, const char *s, bool newline)
{
    bool bol = true, code = false;
    for (; *s; s++) {
        if (bol && (*s == '.' || *s == '\''))
            fputs("\\&", f);
        bol = false;
        switch (*s) {
        case '\\': fputs("\\e", f); break;
        case '-': fputs("\\-", f); break;
        case '`':
            fputs(code ? "\\fR" : "\\fB", f);
            code = !code;
            break;
        case '\n':
            fputc('\n', f);
            bol = true;
            break;
        default: fputc(*s, f);
        }
    }
    if (code)
        fputs("\\fR", f);
    if (newline)
        fputc('\n', f);
}

static void man_option(FILE *f, const cli_opt *o, const char *help)
{
    fputs(".TP\n", f);
    if (o->short_name)
        fprintf(f, "\\fB\\-%c\\fR, ", o->short_name);
    fputs("\\fB\\-\\-", f);
    roff(f, o->name, false);
    fputs("\\fR", f);
    if (o->arg) {
        fputs(" \\fI", f);
        roff(f, o->arg, false);
        fputs("\\fR", f);
    }
    fputc('\n', f);
    roff(f, help, true);
}

static void man_preformatted(FILE *f, const char *text)
{
    fputs(".PP\n.nf\n", f);
    roff(f, text, true);
    fputs(".fi\n", f);
}

static void man_command(FILE *f, const gw_cli_command *c)
{
    fputs(".SS \"", f);
    roff(f, c->name, false);
    fputs("\"\n", f);
    roff(f, c->summary, true);
    const cli_spec *spec = c->spec;
    if (!spec) {
        fprintf(f, ".PP\nSee \\fBgpuwarden %s \\-\\-help\\fR.\n", c->name);
        return;
    }
    fputs(".PP\n.nf\n\\fBgpuwarden ", f);
    roff(f, spec->name, false);
    fputs("\\fR ", f);
    for (const char *p = spec->synopsis ? spec->synopsis : "[OPTIONS]"; *p; p++) {
        if (*p == '\n') {
            fputs("\n\\fBgpuwarden ", f);
            roff(f, spec->name, false);
            fputs("\\fR ", f);
        } else {
            char one[2] = { *p, 0 };
            roff(f, one, false);
        }
    }
    fputs("\n.fi\n.PP\n", f);
    roff(f, spec->description, true);
    bool any = spec->options && spec->options->name;
    char buf[512];
    for (const cli_opt *g = cli_global_options; g->name; g++)
        any |= cli_spec_takes(spec, g);
    if (any)
        fputs(".PP\nOptions:\n", f);
    for (const cli_opt *o = spec->options; o && o->name; o++)
        man_option(f, o, o->help);
    for (const cli_opt *g = cli_global_options; g->name; g++)
        if (cli_spec_takes(spec, g))
            man_option(f, g, cli_global_help(spec, g, buf, sizeof buf));
    man_preformatted(f, spec->exit_codes ? spec->exit_codes : CLI_REMOTE_EXIT_CODES);
}

static void print_man(FILE *f)
{
    fprintf(f, ".\\\" Generated by `gpuwarden help --man` from the CLI's option tables; do not edit.\n"
               ".TH GPUWARDEN 1 \"\" \"gpuwarden %s\" \"User Commands\"\n"
               ".\\\" No hyphenation, left-aligned: an option's name stays one word.\n"
               ".nh\n.ad l\n"
               ".SH NAME\n"
               "gpuwarden \\- operator CLI of gpuwardend, the GPU passthrough lifecycle daemon\n"
               ".SH SYNOPSIS\n"
               ".B gpuwarden\n"
               "[\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR...]\n"
               ".br\n"
               ".B gpuwarden help\n"
               "[\\fICOMMAND\\fR]\n"
               ".SH DESCRIPTION\n"
               "\\fBgpuwarden\\fR reads a host's GPUs and their topology (\\fBdiscover\\fR, \\fBsnapshot\\fR,\n"
               "\\fBxml\\fR, \\fBnova\\-config\\fR), runs as the libvirt qemu hook (\\fBhook\\fR), and asks\n"
               "\\fBgpuwardend\\fR(8) for the GPUs' lifecycle states, inventory, audit log and events, or\n"
               "changes them (\\fBquarantine\\fR, \\fBrelease\\fR, \\fBsanitize\\fR; the admin endpoint).\n"
               "Global options may come before the command or after it.\n"
               ".SH GLOBAL OPTIONS\n"
               "Each command takes those of its own section below.\n",
            gw_version());
    char buf[512];
    for (const cli_opt *g = cli_global_options; g->name; g++)
        man_option(f, g, cli_global_help(&main_spec, g, buf, sizeof buf));
    fputs(".TP\n\\fB\\-\\-version\\fR\nthe version\n"
          ".SH OUTPUT FORMATS\n", f);
    roff(f, cli_formats_text, true);
    fputs(".SH COMMANDS\n", f);
    for (const gw_cli_command *c = gw_cli_commands; c->name; c++)
        man_command(f, c);
    fputs(".SH ENVIRONMENT\n"
          ".TP\n.B GPUWARDEN_ENDPOINT\nthe request endpoint when \\-\\-endpoint is not given\n"
          ".TP\n.B GPUWARDEN_EVENTS_ENDPOINT\nthe events endpoint of \\fBevents\\fR\n"
          ".TP\n.B GPUWARDEN_QUARANTINE_PUBLISH_WAIT\n\\fBquarantine\\fR's default \\-\\-publish\\-wait\n"
          ".TP\n.B GPUWARDEN_HOOK_ON_DAEMON_DOWN\n.TQ\n.B GPUWARDEN_HOOK_TIMEOUT_MS\n.TQ\n"
          ".B GPUWARDEN_HOOK_PUBLISH_WAIT\n\\fBhook\\fR's defaults of \\-\\-on\\-daemon\\-down, \\-\\-timeout\\-ms "
          "and \\-\\-publish\\-wait\n", f);
    man_preformatted(f, "");
    fputs(".SH EXIT STATUS\n", f);
    man_preformatted(f, "0 ok, 1 failure, 2 usage, 3 device errors (discover),\n"
                        "4 daemon unreachable, 5 refused by the daemon");
    fputs(".SH FILES\n"
          ".TP\n.I /run/gpuwarden/read.sock\n.TQ\n.I /run/gpuwarden/admin.sock\n.TQ\n"
          ".I /run/gpuwarden/events.sock\nthe daemon's read, admin (root) and events endpoints\n"
          ".TP\n.I /var/lib/gpuwarden/audit.log\nthe audit log \\fBaudit\\fR reads without the daemon\n"
          ".SH SEE ALSO\n"
          "\\fBgpuwardend\\fR(8), \\fBgpuwarden.conf\\fR(5), \\fBvirsh\\fR(1), \\fBopenstack\\fR(1)\n", f);
}

/* ---- bash completion ------------------------------------------------------ */

/* What bash completes for `complete` (cli_opt.complete): words, or "@file",
 * "@dir", "@addr" (the host's display-class PCI functions). */
static void completion_action(FILE *f, const char *what)
{
    if (!what)
        fputs("COMPREPLY=()", f);
    else if (!strcmp(what, "@file"))
        fputs("COMPREPLY=($(compgen -f -- \"$cur\"))", f);
    else if (!strcmp(what, "@dir"))
        fputs("COMPREPLY=($(compgen -d -- \"$cur\"))", f);
    else if (!strcmp(what, "@addr"))
        fputs("COMPREPLY=($(compgen -W \"$(_gpuwarden_gpus)\" -- \"$cur\"))", f);
    else
        fprintf(f, "COMPREPLY=($(compgen -W \"%s\" -- \"$cur\"))", what);
}

static void completion_opts(FILE *f, const cli_spec *spec, const cli_opt *o)
{
    if (o->short_name)
        fprintf(f, " -%c", o->short_name);
    fprintf(f, " --%s", o->name);
    (void)spec;
}

/* The `case` arm that completes an option's argument. */
static void completion_arg(FILE *f, const char *cmd, const cli_spec *spec, const cli_opt *o)
{
    if (!o->arg)
        return;
    fprintf(f, "        %s:--%s", cmd, o->name);
    if (o->short_name)
        fprintf(f, " | %s:-%c", cmd, o->short_name);
    fputs(") ", f);
    completion_action(f, o->id == 'f' && spec ? spec->formats : o->complete);
    fputs("; return ;;\n", f);
}

static void print_completion(FILE *f)
{
    fputs("# bash completion for gpuwarden(1). Generated by `gpuwarden complete` from the\n"
          "# CLI's option tables; do not edit.\n"
          "_gpuwarden_gpus()\n"
          "{\n"
          "    local d c\n"
          "    for d in /sys/bus/pci/devices/*; do\n"
          "        read -r c < \"$d/class\" 2>/dev/null && [[ $c == 0x03* ]] && echo \"${d##*/}\"\n"
          "    done\n"
          "}\n\n"
          "_gpuwarden()\n"
          "{\n"
          "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
          "    local cmd= i w skip=0\n"
          "    [[ $cur == = ]] && cur=\n"
          "    [[ $prev == = ]] && prev=${COMP_WORDS[COMP_CWORD-2]}\n"
          "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
          "        w=${COMP_WORDS[i]}\n"
          "        if ((skip)); then skip=0; continue; fi\n"
          "        case $w in\n"
          "        =) ;;\n", f);
    /* The global options that take an argument: skipped before the command. */
    fputs("       ", f);
    for (const cli_opt *g = cli_global_options; g->name; g++) {
        if (!g->arg)
            continue;
        fprintf(f, " --%s |", g->name);
        if (g->short_name)
            fprintf(f, " -%c |", g->short_name);
    }
    fputs(" --no-such-option) skip=1 ;;\n"
          "        -*) ;;\n"
          "        *) cmd=$w; break ;;\n"
          "        esac\n"
          "    done\n"
          "    case $cmd:$prev in\n", f);
    for (const gw_cli_command *c = gw_cli_commands; c->name; c++) {
        const cli_spec *spec = c->spec;
        for (const cli_opt *o = spec ? spec->options : NULL; o && o->name; o++)
            completion_arg(f, c->name, spec, o);
        for (const cli_opt *g = cli_global_options; spec && g->name; g++)
            if (cli_spec_takes(spec, g))
                completion_arg(f, c->name, spec, g);
    }
    for (const cli_opt *g = cli_global_options; g->name; g++)
        if (g->arg)
            completion_arg(f, "", &main_spec, g);
    fputs("    esac\n"
          "    if [[ -z $cmd ]]; then\n"
          "        if [[ $cur == -* ]]; then\n"
          "            COMPREPLY=($(compgen -W \"--version", f);
    for (const cli_opt *g = cli_global_options; g->name; g++)
        completion_opts(f, &main_spec, g);
    fputs("\" -- \"$cur\"))\n"
          "        else\n"
          "            COMPREPLY=($(compgen -W \"", f);
    for (const gw_cli_command *c = gw_cli_commands; c->name; c++)
        fprintf(f, "%s%s", c == gw_cli_commands ? "" : " ", c->name);
    fputs("\" -- \"$cur\"))\n"
          "        fi\n"
          "        return\n"
          "    fi\n"
          "    local opts= operands=\n"
          "    case $cmd in\n", f);
    for (const gw_cli_command *c = gw_cli_commands; c->name; c++) {
        const cli_spec *spec = c->spec;
        if (!spec)
            continue;
        fprintf(f, "    %s) opts=\"", c->name);
        for (const cli_opt *o = spec->options; o && o->name; o++)
            completion_opts(f, spec, o);
        for (const cli_opt *g = cli_global_options; g->name; g++)
            if (cli_spec_takes(spec, g))
                completion_opts(f, spec, g);
        fprintf(f, "\"; operands=\"%s\" ;;\n", spec->operands ? spec->operands : "");
    }
    fputs("    esac\n"
          "    if [[ $cur == -* ]]; then\n"
          "        COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
          "    elif [[ $operands == @addr ]]; then\n"
          "        COMPREPLY=($(compgen -W \"$(_gpuwarden_gpus)\" -- \"$cur\"))\n"
          "    elif [[ $cmd == help ]]; then\n"
          "        COMPREPLY=($(compgen -W \"", f);
    for (const gw_cli_command *c = gw_cli_commands; c->name; c++)
        fprintf(f, "%s%s", c == gw_cli_commands ? "" : " ", c->name);
    fputs("\" -- \"$cur\"))\n"
          "    elif [[ -n $operands ]]; then\n"
          "        COMPREPLY=($(compgen -W \"$operands\" -- \"$cur\"))\n"
          "    else\n"
          "        COMPREPLY=()\n"
          "    fi\n"
          "}\n"
          "complete -F _gpuwarden gpuwarden\n", f);
}

/* ---- the commands ----------------------------------------------------------- */

enum { OPT_MAN = 1 };

static const cli_opt help_options[] = {
    { "man", 0, NULL, OPT_MAN, "print the gpuwarden(1) manual page (roff) instead", NULL, 0 },
    { 0 },
};

const cli_spec cmd_help_spec = {
    .name = "help",
    .synopsis = "[COMMAND]\n--man",
    .description = "Print the commands and global options, or COMMAND's --help; with --man, the\n"
                   "gpuwarden(1) manual page as roff (`man -l` reads it from a file).",
    .options = help_options,
    .exit_codes = "exit codes: 0 printed, 2 usage (an unknown command)",
};

const cli_spec cmd_complete_spec = {
    .name = "complete",
    .description = "Print the bash completion script for gpuwarden: its commands, options, the\n"
                   "values of -f and of the options that have a fixed set, files, directories\n"
                   "and the host's GPU addresses. The packages install it as\n"
                   "/usr/share/bash-completion/completions/gpuwarden; elsewhere\n"
                   "`source <(gpuwarden complete)` loads it.",
    .exit_codes = "exit codes: 0 printed, 2 usage",
};

static int help_option(void *ctx, int id, const char *arg)
{
    (void)arg;
    *(bool *)ctx = id == OPT_MAN;
    return GW_EXIT_OK;
}

int cmd_help(int argc, char **argv)
{
    bool man = false;
    cli_remote r;
    int code = cli_parse(&cmd_help_spec, argc, argv, &r, help_option, &man);
    if (code >= 0)
        return code;
    if (optind + 1 < argc || (man && optind < argc)) {
        fprintf(stderr, "gpuwarden help: unexpected argument '%s'\n", argv[argc - 1]);
        return GW_EXIT_USAGE;
    }
    if (man) {
        print_man(stdout);
    } else if (optind < argc) {
        const gw_cli_command *c = gw_cli_command_find(argv[optind]);
        if (!c) {
            fprintf(stderr, "gpuwarden help: unknown command '%s'\n", argv[optind]);
            return GW_EXIT_USAGE;
        }
        if (!c->spec) {
            char *args[] = { (char *)c->name, (char *)"--help", NULL };
            return c->run(2, args);
        }
        cli_usage(c->spec, stdout);
    } else {
        cli_main_usage(stdout);
    }
    return fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
}

int cmd_complete(int argc, char **argv)
{
    cli_remote r;
    int code = cli_parse(&cmd_complete_spec, argc, argv, &r, NULL, NULL);
    if (code >= 0)
        return code;
    if ((code = cli_no_operands(&cmd_complete_spec, argc, argv)) != GW_EXIT_OK)
        return code;
    print_completion(stdout);
    return fflush(stdout) == 0 ? GW_EXIT_OK : GW_EXIT_FAILURE;
}
