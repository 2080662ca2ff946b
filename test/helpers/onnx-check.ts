import { spawnSync } from 'node:child_process';

/** python3-onnx's full checker on a file (an outside reader of the format): undefined when it accepts it, else what it said; 'absent' without it. */
export function onnxChecker(path: string): string | undefined {
  const r = spawnSync('/usr/bin/python3', ['-c', 'import sys, onnx; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)', path], {
    encoding: 'utf8',
  });
  if (r.error || /No module named 'onnx'/.test(r.stderr)) return 'absent';
  return r.status === 0 ? undefined : r.stderr.trim().split('\n').pop();
}
