;; Gear-hash cut-point search of the content-defined chunker (src/core/chunker.ts).
;; Compiled into src/core/gear-wasm.ts by `node dist/scripts/gen-gear-wasm.js`; a unit test
;; checks that the committed bytes are this file's.
;;
;; Memory: bytes [0, 1024) hold the 256-entry i32 gear table; the data buffer follows.
(module
  (memory (export "memory") 1)
  ;; cut(p, n, min, avg, max, maskS, maskL): for the chunk starting at p with n > min bytes
  ;; available, scans from p+min with maskS up to p+min(avg, n), then with maskL up to
  ;; p+min(max, n). Returns the length at the first cut, or 0 when none is found.
  (func (export "cut") (param $p i32) (param $n i32) (param $min i32) (param $avg i32) (param $max i32) (param $ms i32) (param $ml i32) (result i32)
    (local $i i32) (local $h i32) (local $normal i32) (local $limit i32)
    (local.set $i (i32.add (local.get $p) (local.get $min)))
    (local.set $normal (i32.add (local.get $p) (select (local.get $avg) (local.get $n) (i32.lt_u (local.get $avg) (local.get $n)))))
    (local.set $limit (i32.add (local.get $p) (select (local.get $max) (local.get $n) (i32.lt_u (local.get $max) (local.get $n)))))
    (block $done1
      (br_if $done1 (i32.ge_u (local.get $i) (local.get $normal)))
      (loop $l1
        (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 1))
                               (i32.load (i32.shl (i32.load8_u (local.get $i)) (i32.const 2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (if (i32.eqz (i32.and (local.get $h) (local.get $ms)))
          (then (return (i32.sub (local.get $i) (local.get $p)))))
        (br_if $l1 (i32.lt_u (local.get $i) (local.get $normal)))))
    (block $done2
      (br_if $done2 (i32.ge_u (local.get $i) (local.get $limit)))
      (loop $l2
        (local.set $h (i32.add (i32.shl (local.get $h) (i32.const 1))
                               (i32.load (i32.shl (i32.load8_u (local.get $i)) (i32.const 2)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (if (i32.eqz (i32.and (local.get $h) (local.get $ml)))
          (then (return (i32.sub (local.get $i) (local.get $p)))))
        (br_if $l2 (i32.lt_u (local.get $i) (local.get $limit)))))
    (i32.const 0))
)
