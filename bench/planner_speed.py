"""Planner time per model (pixel4 profiles, sync 100 us): python -m bench.planner_speed -> bench/results/planner_speed.json."""
import time, json, statistics, tempfile, onnx
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
import oplat.zoo as zoo
from coexec.plan import make_plan
from oplat.profile import load_profile
cpu, gpu = load_profile("pixel4/tflite-cpu-3med"), load_profile("pixel4/tflite-gpu")
out={}
for n in ["mobilenet_v2_1.0","resnet50","efficientnet_lite4","shufflenet_v2_1.5","ghostnet_1.0","regnety_1.6gf","densenet121"]:
    p = f"{tempfile.gettempdir()}/pt_{n}.onnx"; onnx.save(zoo.build(n, graph_only=True), p)
    make_plan(p,cpu,gpu,sync_us=100)
    ts=[]; 
    for _ in range(3):
        t=time.perf_counter(); r=make_plan(p,cpu,gpu,sync_us=100); ts.append(time.perf_counter()-t)
    out[n]={"ops":len(r["ops"]),"planner_s":r["planner_seconds"],"make_plan_s":statistics.median(ts)}
    print(n, out[n], flush=True)
json.dump(out, open(ROOT / "bench" / "results" / "planner_speed.json", "w"), indent=1)
