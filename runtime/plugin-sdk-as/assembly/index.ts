// civicflow plugin SDK for AssemblyScript. A plugin module re-exports the ABI functions
// and answers each request with `ok(...)` or `fail(...)`:
//
//   export { civicflow_abi_version, civicflow_alloc } from "@civicflow/plugin-sdk/assembly";
//   import { Request, ok, fail } from "@civicflow/plugin-sdk/assembly";
//
//   export function civicflow_call(ptr: i32, len: i32): i64 {
//     const req = Request.read(ptr, len);
//     if (req.hook == "volunteer.points") return ok(points(req.data()).toString());
//     return fail("unknown_hook", req.hook);
//   }
//
// Build with `asc --runtime stub --use abort=`: every call runs in a fresh instance, so
// memory is never freed, and the module must import nothing but civicflow.log.

import { JSON } from "assemblyscript-json/assembly";
export { JSON };

export const ABI_VERSION: i32 = 1;

@external("civicflow", "log")
declare function hostLog(ptr: i32, len: i32): void;

export function civicflow_abi_version(): i32 {
  return ABI_VERSION;
}

export function civicflow_alloc(len: i32): i32 {
  return <i32>heap.alloc(<usize>len);
}

/** Write a line to the host's log for this call (bounded by the host). */
export function log(message: string): void {
  const bytes = String.UTF8.encode(message);
  hostLog(<i32>changetype<usize>(bytes), bytes.byteLength);
}

/** The host's request: the hook's name and its input. */
export class Request {
  constructor(public hook: string, public input: JSON.Obj) {}

  static read(ptr: i32, len: i32): Request {
    const text = String.UTF8.decodeUnsafe(<usize>ptr, <usize>len);
    const root = <JSON.Obj>JSON.parse(text);
    const hook = root.getString("hook");
    const input = root.getObj("input");
    return new Request(hook ? hook.valueOf() : "", input ? input : new JSON.Obj());
  }

  /** `input.data`: the instance's data, where most rules find what they need. */
  data(): JSON.Obj {
    const d = this.input.getObj("data");
    return d ? d : new JSON.Obj();
  }
}

/** A number field of an object, or `fallback` when it is missing or not a number. */
export function num(obj: JSON.Obj, key: string, fallback: f64): f64 {
  const f = obj.getFloat(key);
  if (f) return f.valueOf();
  const i = obj.getInteger(key);
  if (i) return <f64>i.valueOf();
  return fallback;
}

/** A string field of an object, or `fallback`. */
export function str(obj: JSON.Obj, key: string, fallback: string): string {
  const s = obj.getString(key);
  return s ? s.valueOf() : fallback;
}

function answer(json: string): i64 {
  const bytes = String.UTF8.encode(json);
  return (<i64>changetype<usize>(bytes) << 32) | <i64>bytes.byteLength;
}

/** Answer with a JSON value (already encoded, e.g. `"12"` or `'{"a":1}'`). */
export function ok(valueJson: string): i64 {
  return answer('{"ok":' + valueJson + "}");
}

/** Nothing to say for this input: the binding above this plugin's unit answers instead. */
export function inherit(): i64 {
  return answer('{"inherit":true}');
}

/** Refuse with a code and a message. */
export function fail(code: string, message: string): i64 {
  const e = new JSON.Obj();
  e.set("code", code);
  e.set("message", message);
  return answer('{"error":' + e.stringify() + "}");
}
