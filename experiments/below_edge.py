"""below_edge.py STUDY [STUDY ...] (session 30): the `rl_below_edge` finding computed from a
study's summary.json as it stands (its greedy_gain and rl_sharpens_or_expands rows), so studies
reported before the finding existed can be read without re-reporting them."""
import sys

from rlscale.files import read_json
from rlscale.findings_evals import rl_below_edge
from rlscale.report_text import shown

for study in sys.argv[1:]:
    s = read_json(f"{study}/summary.json")
    found = {f["id"]: f for f in s["findings"]}
    f = found.get("rl_below_edge") or rl_below_edge(
        s["rungs"], found["rl_sharpens_or_expands"], found["greedy_gain"])
    print(f"{study} (seed {s['seed']}): reproduced {f['reproduced']}, value {f['value']:+.3f} "
          f"[{f['interval'][0]:+.3f}, {f['interval'][1]:+.3f}]\n  {shown(f)}")
