"""Write a `wstest -m fuzzingclient` spec and list the cases it selects.

usage: python2 cases.py SPEC_OUT URL AGENT CASES [EXCLUDE]
    CASES, EXCLUDE  comma-separated case patterns, e.g. "1.*,2.*,12.1.3"

Runs under the Python 2.7 that runs wstest (conformance/setup.sh installs it),
because it resolves the patterns with the suite's own case table and matcher
(autobahntestsuite.caseset.CaseSet): the ids printed, one per line, are exactly
the cases wstest will run, in its order.  The report directory is the directory
of SPEC_OUT.

Exit status 2 when a pattern is malformed or names a case that does not exist,
or when the selection is empty (given an empty selection, wstest waits forever
instead of stopping).  A wildcard pattern that matches nothing only gets a note
on stderr: the suite has no sections 8 and 11, yet "8.*" is a natural thing to
write.  Kept valid for both Python 2.7 and 3.
"""

import json
import os
import re
import sys

PATTERN = re.compile(r"^[0-9*]+(\.[0-9*]+)*$")


def split_patterns(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def fail(message):
    sys.stderr.write("cases.py: " + message + "\n")
    return 2


def main(argv):
    if len(argv) not in (5, 6):
        sys.stderr.write(__doc__)
        return 2
    spec_path, url, agent, cases = argv[1:5]
    include = split_patterns(cases)
    exclude = split_patterns(argv[5] if len(argv) == 6 else "")
    if not include:
        return fail("no case pattern given")

    from autobahntestsuite.case import CaseBasename, CaseCategories, Cases, CaseSetname, CaseSubCategories
    from autobahntestsuite.caseset import CaseSet

    case_set = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
    for pattern in include + exclude:
        if not PATTERN.match(pattern):
            return fail("malformed case pattern " + repr(pattern) + " (digits, dots and * only)")
        if "*" not in pattern:
            # CaseSet passes ids without a '*' through unchecked, and wstest then crashes
            if pattern not in case_set.CasesById:
                return fail("there is no Autobahn case " + repr(pattern))
        elif not case_set.resolveCasePatternList([pattern]):
            # e.g. "8.*" and "11.*": the suite has no sections 8 and 11
            sys.stderr.write("cases.py: note: case pattern " + repr(pattern) + " matches no case\n")

    spec = {
        "outdir": os.path.dirname(os.path.abspath(spec_path)),
        "servers": [{"agent": agent, "url": url}],
        "cases": include,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    selected = case_set.parseSpecCases(spec)
    if not selected:
        excluded = ",".join(exclude)
        return fail("the selection is empty (cases " + repr(cases) + ", exclude " + repr(excluded) + ")")
    with open(spec_path, "w") as out:
        json.dump(spec, out, indent=2, sort_keys=True)
    sys.stdout.write("".join(case_id + "\n" for case_id in selected))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
