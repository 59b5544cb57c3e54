"""The benchmark's command line: ``python -m tools.bench [options]`` (``--help`` lists them)."""
import argparse
import json
import os
import sys

from .cases import ROOT
from .harness import CASES, QUICK_SCALE, run
from .baseline import run_baseline
from .report import (DEFAULT_TABLE, TABLE_END, TABLE_START, check_markers, format_baseline_table,
                     format_table, plot, table_block, write_table)

PROG = 'python -m tools.bench'


def _parse(argv):
    parser = argparse.ArgumentParser(prog=PROG, description=(
        'Time our samplers against GluonCV on identical inputs and print a markdown table.'))
    parser.add_argument('--cases', nargs='+', default=None, metavar='CASE',
                        help='subset of: {} (space or comma separated)'.format(', '.join(CASES)))
    parser.add_argument('--repeat', type=int, default=None,
                        help='timed runs per case, median reported (default 7)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed runs first (default 1)')
    parser.add_argument('--scale', type=float, default=None,
                        help='multiply every size (default 1)')
    parser.add_argument('--quick', action='store_true',
                        help='tiny smoke run: --scale {} --repeat 3 --no-rss; goals are not '
                             'judged'.format(QUICK_SCALE))
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-rss', dest='rss', action='store_false', default=None,
                        help='skip the subprocess peak-RSS check of the memory case')
    parser.add_argument('--no-check', dest='check', action='store_false',
                        help='skip the check that ours and GluonCV agree with subsampling off')
    parser.add_argument('--json', action='store_true', help='print JSON instead of the table')
    parser.add_argument('--baseline', metavar='REV',
                        help='time our paths against git revision REV in one process, '
                             'alternating, and print the ratios now / REV instead')
    parser.add_argument('--plot', metavar='FILE', help='write a bar chart (needs matplotlib)')
    parser.add_argument('--write-table', metavar='PATH', nargs='?',
                        const=os.path.join(ROOT, DEFAULT_TABLE),
                        help='rewrite the block between {} and {} in PATH (default: {} of this '
                             'checkout) with the table'.format(TABLE_START, TABLE_END,
                                                               DEFAULT_TABLE))
    args = parser.parse_args(argv)
    if args.cases is None:
        args.cases = list(CASES)
    else:
        args.cases = [c for arg in args.cases for c in arg.split(',') if c]
    if args.repeat is None:
        args.repeat = 3 if args.quick else 7
    if args.scale is None:
        args.scale = QUICK_SCALE if args.quick else 1.0
    if args.rss is None:
        args.rss = not args.quick
    if args.baseline is not None and (args.write_table or args.plot):
        parser.error('--write-table and --plot do not apply to --baseline')
    if args.write_table and set(args.cases) != set(CASES):
        parser.error('--write-table rewrites the whole table: run every case (drop --cases)')
    return parser, args


def _command(argv):
    """The command line as a reader would retype it (the default table path left implicit)."""
    return ' '.join([PROG] + [a if a != os.path.join(ROOT, DEFAULT_TABLE) else DEFAULT_TABLE
                              for a in argv])


def main(argv=None):
    """Command line entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, args = _parse(argv)
    try:
        if args.write_table:  # fail before the (long) run if the file cannot take the table
            with open(args.write_table, encoding='utf-8') as f:
                check_markers(f.read(), args.write_table)
        if args.baseline is not None:
            report = run_baseline(args.baseline, args.cases, args.repeat, args.warmup,
                                  args.scale, args.seed)
        else:
            report = run(args.cases, args.repeat, args.warmup, args.scale, args.seed, args.rss,
                         args.check)
    except (ValueError, OSError) as err:
        parser.error(str(err))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        table = format_table if args.baseline is None else format_baseline_table
        print(table(report), end='')
    if args.write_table:
        write_table(args.write_table, table_block(report, _command(argv)))
        print('wrote the table to {}'.format(args.write_table), file=sys.stderr)
    if args.plot:
        plot(report, args.plot)
    return 0


if __name__ == '__main__':
    sys.exit(main())
