// 志愿服务积分与星级 — volunteer points per activity and the yearly star rating on each
// member's card (seed 004). Written in AssemblyScript to show the TypeScript path.
//
// volunteer.points: 10 points an hour of service, 1.5x for a resident's micro-wish, 2x for
// emergency duty; at most 100 points for one activity.
// volunteer.stars: yearly points (positive and negative) to 0-5 stars at 10, 50, 100, 150, 200.

export { civicflow_abi_version, civicflow_alloc } from "@civicflow/plugin-sdk/assembly";
import { Request, ok, fail, num, str, log } from "@civicflow/plugin-sdk/assembly";

const PER_HOUR: f64 = 10;
const CAP: f64 = 100;

function points(hours: f64, kind: string): i32 {
  let factor: f64 = 1;
  if (kind == "wish") factor = 1.5;
  else if (kind == "emergency") factor = 2;
  return <i32>Math.round(Math.min(hours * PER_HOUR * factor, CAP));
}

function stars(yearly: f64): i32 {
  if (yearly >= 200) return 5;
  if (yearly >= 150) return 4;
  if (yearly >= 100) return 3;
  if (yearly >= 50) return 2;
  if (yearly >= 10) return 1;
  return 0;
}

export function civicflow_call(ptr: i32, len: i32): i64 {
  const req = Request.read(ptr, len);
  const data = req.data();
  if (req.hook == "volunteer.points") {
    const hours = num(data, "hours", -1);
    if (hours < 0 || hours > 24) return fail("bad_hours", "hours of service must be between 0 and 24");
    const kind = str(data, "kind", "regular");
    log("kind " + kind);
    return ok(points(hours, kind).toString());
  }
  if (req.hook == "volunteer.stars") {
    return ok(stars(num(data, "yearly_points", 0)).toString());
  }
  return fail("unknown_hook", "this plugin does not answer \"" + req.hook + "\"");
}
