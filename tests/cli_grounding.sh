# `vlmc run --json` boxes and `vlmc run --draw` (sourced helpers: tests/clilib.sh). The llava_next fixture gets the
# tokenizer of tests/make_fixture_prompt_model.py, under which `vlmc run` answers exactly transformers' 16 greedy
# ids; then the vocabulary strings of those ids are rewritten (with a ByteLevel decoder, so that they join without
# spaces) to spell an answer with a KOSMOS-2 entity, a Qwen-VL box and a bracketed box:
#   <phrase>a cat</phrase><object><patch_index_0044><patch_index_0863></object> and <ref>dog</ref>
#   <box>(100,200),(300,400)</box> at [15, 421, 305, 711]. ok  and
# The boxes must come back in pixels of the 53 x 37 image, and the drawn PNG must hold the image with exactly
# the outlines of those boxes.
. tests/clilib.sh

FX="$SHARED/fixtures/llava_next"
if ! have_shared || [ ! -d "$FX" ]; then
  skip "run boxes" "../shared/fixtures/llava_next absent"; finish; exit $?
fi
M="$TMP/model"
IMG="$FX/reference/image.png"
python3 tests/make_fixture_prompt_model.py "$FX" "$M" || { fail "make test model" "python3"; finish; exit 1; }
python3 - "$M/tokenizer.json" "$FX/reference/generated_ids.bin" <<'PY' || { fail "rewrite vocabulary" "python3"; finish; exit 1; }
import json, struct, sys
path, gen = sys.argv[1], sys.argv[2]
b = open(gen, "rb").read(); ids = struct.unpack("<%di" % (len(b) // 4), b)
words = ["<phrase>", "a cat", "</phrase>", "<object>", "<patch_index_0044>", "<patch_index_0863>", "</object>",
         " and ", "<ref>dog</ref>", "<box>(100,200),(300,400)</box>", " at ", "[15, 421, 305, 711]", ".", " ok",
         " ", " and "]
tok = json.load(open(path))
inv = {i: t for t, i in tok["model"]["vocab"].items()}
for i, w in zip(ids, words):
    s = w.replace(" ", "\u0120")  # ByteLevel: printable ASCII is itself, the space is U+0120
    assert inv[i] == s or s not in tok["model"]["vocab"], (i, w)
    del tok["model"]["vocab"][inv[i]]
    tok["model"]["vocab"][s] = i; inv[i] = s
tok["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
json.dump(tok, open(path, "w"), ensure_ascii=False)
PY

"$VLMC" run -m "$M" --image "$IMG" -p x -n 16 --ignore-eos --json --draw "$TMP/boxes.png" -t 1 >"$TMP/run.json" 2>"$TMP/err"
rc=$?
if [ $rc -eq 0 ] && python3 - "$TMP/run.json" "$FX/reference/generated_ids.bin" <<'PY'
import json, struct, sys
j = json.load(open(sys.argv[1]))
b = open(sys.argv[2], "rb").read()
assert j["ids"] == list(struct.unpack("<%di" % (len(b) // 4), b)), "not the fixture's greedy ids"
assert j["text"].startswith("<phrase>a cat</phrase><object><patch_index_0044>"), j["text"]
W, H = 53, 37
want = [("a cat", (0.390625, 0.046875, 0.984375, 0.828125)), ("dog", (0.1, 0.2, 0.3, 0.4)),
        (None, (0.015, 0.421, 0.305, 0.711))]
assert len(j["boxes"]) == len(want), j["boxes"]
for got, (label, (x1, y1, x2, y2)) in zip(j["boxes"], want):
    assert got["label"] == label, got
    for g, w in zip(got["box"], (x1 * W, y1 * H, x2 * W, y2 * H)):
        assert abs(g - w) <= 0.005 + 1e-9, (got, w)
PY
then ok "run --json: KOSMOS-2, Qwen-VL and bracketed boxes in pixels of the image"
else fail "run --json boxes" "rc=$rc $(cat "$TMP/err" "$TMP/run.json")"; fi

# the PNG: the decoded image except on the outlines of the three boxes (1 px, first colours of the palette)
"$VLMC" preprocess -m "$M" --image "$IMG" --out "$TMP/pp" >/dev/null 2>"$TMP/err" || fail "preprocess" "$(cat "$TMP/err")"
if [ -f "$TMP/boxes.png" ] && python3 - "$TMP/boxes.png" "$TMP/pp/image_rgb.bin" "$TMP/run.json" <<'PY'
import json, math, struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat, W = 8, b"", None
while pos < len(data):
    n, = struct.unpack(">I", data[pos:pos + 4]); kind = data[pos + 4:pos + 8]; body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        W, H, depth, ctype = struct.unpack(">IIBB", body[:10]); assert depth == 8 and ctype == 2
    elif kind == b"IDAT": idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
rows, prev = [], bytearray(W * 3)
for y in range(H):  # undo the PNG row filters
    f, line = raw[y * (W * 3 + 1)], bytearray(raw[y * (W * 3 + 1) + 1:(y + 1) * (W * 3 + 1)])
    for i in range(len(line)):
        a = line[i - 3] if i >= 3 else 0; b = prev[i]; c = prev[i - 3] if i >= 3 else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(line); prev = line
img = open(sys.argv[2], "rb").read()
palette = [(230, 25, 75), (60, 180, 75), (0, 130, 200)]
boxes = json.load(open(sys.argv[3]))["boxes"]
painted = {}
for k, bx in enumerate(boxes):
    x1, y1 = math.floor(bx["box"][0]), math.floor(bx["box"][1])
    x2, y2 = math.ceil(bx["box"][2]) - 1, math.ceil(bx["box"][3]) - 1
    for y in range(max(y1, 0), min(y2, H - 1) + 1):
        for x in range(max(x1, 0), min(x2, W - 1) + 1):
            if x in (x1, x2) or y in (y1, y2): painted[(x, y)] = palette[k]
assert len(painted) > 50
for y in range(H):
    for x in range(W):
        got = tuple(rows[y][3 * x:3 * x + 3])
        want = painted.get((x, y), tuple(img[3 * (y * W + x):3 * (y * W + x) + 3]))
        assert got == want, (x, y, got, want)
PY
then ok "run --draw: the image with the outlines of the answer's boxes"
else fail "run --draw" "$(ls -la "$TMP")"; fi

# errors
"$VLMC" run -m "$M" -p x --draw "$TMP/no.png" >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 2 ] && grep -q "needs an image" "$TMP/o" && ok "--draw without an image: usage error" || fail "--draw without image" "rc=$rc $(cat "$TMP/o")"
"$VLMC" run -m "$M" --image "$IMG" -p x -n 2 --draw "$TMP/nodir/x.png" >"$TMP/o" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "nodir" "$TMP/o" && ok "--draw into a missing folder: clear error" || fail "--draw bad path" "rc=$rc $(cat "$TMP/o")"
"$VLMC" run -m "$M" --image "$IMG" -p x -n 1 --json -t 1 >"$TMP/one.json" 2>"$TMP/err"
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["boxes"])' "$TMP/one.json")" = "[]" ] &&
  ok "an answer without boxes: \"boxes\": []" || fail "no boxes" "$(cat "$TMP/err" "$TMP/one.json")"

finish
