#!/usr/bin/env bash
# vlmc preprocess: the seam against fixtures (bit-exact .bin files) and its errors.
. tests/clilib.sh

same_bin() { cmp -s "$1" "$2"; }

case_llava_next() {
  local fx="$SHARED/fixtures/llava_next"
  [ -d "$fx" ] || { skip llava_next "no fixture"; return; }
  local out="$TMP/ln"
  if ! "$VLMC" preprocess -m "$fx" --image "$fx/reference/image.png" --out "$out" >"$TMP/ln.log" 2>&1; then
    fail llava_next "exit status $(cat "$TMP/ln.log")"; return
  fi
  [ -f "$out/manifest.json" ] || { fail llava_next "no manifest.json"; return; }
  same_bin "$out/pixel_values.bin" "$fx/reference/pixel_values.bin" || { fail llava_next "pixel_values.bin differs"; return; }
  same_bin "$out/image_sizes.bin" "$fx/reference/image_sizes.bin" || { fail llava_next "image_sizes.bin differs"; return; }
  same_bin "$out/image_rgb.bin" "$fx/reference/image_raw.bin" || { fail llava_next "image_rgb.bin differs"; return; }
  grep -q '"num_image_tokens":[[:space:]]*44' "$out/manifest.json" || { fail llava_next "num_image_tokens != 44"; return; }
  grep -q '"shape":[[:space:]]*\[1, 3, 3, 56, 56\]' "$out/manifest.json" || { fail llava_next "pixel_values shape"; return; }
  ok llava_next
}

case_qwen2_vl() {
  local fx="$SHARED/fixtures/qwen2_vl"
  [ -d "$fx" ] || { skip qwen2_vl "no fixture"; return; }
  local out="$TMP/q2"
  "$VLMC" preprocess -m "$fx" --image "$fx/reference/image.png" --out "$out" >"$TMP/q2.log" 2>&1 \
    || { fail qwen2_vl "exit status $(cat "$TMP/q2.log")"; return; }
  same_bin "$out/pixel_values.bin" "$fx/reference/pixel_values.bin" || { fail qwen2_vl "pixel_values.bin differs"; return; }
  same_bin "$out/image_grid_thw.bin" "$fx/reference/image_grid_thw.bin" || { fail qwen2_vl "image_grid_thw.bin differs"; return; }
  grep -q '"num_image_tokens":[[:space:]]*12' "$out/manifest.json" || { fail qwen2_vl "num_image_tokens != 12"; return; }
  grep -q '"shape":[[:space:]]*\[48, 1176\]' "$out/manifest.json" || { fail qwen2_vl "pixel_values shape"; return; }
  # smart_resize refuses images smaller than patch_size · merge_size (28) on a side, as transformers does
  { printf 'P6\n20 40\n255\n'; head -c 2400 /dev/zero; } > "$TMP/small.ppm"
  "$VLMC" preprocess -m "$fx" --image "$TMP/small.ppm" --out "$TMP/q2b" >/dev/null 2>"$TMP/q2b.err"
  [ $? -eq 1 ] && grep -q "larger than factor:28" "$TMP/q2b.err" || { fail qwen2_vl "small image: $(cat "$TMP/q2b.err")"; return; }
  ok qwen2_vl
}

case_idefics3_config_path() {
  local fx="$SHARED/fixtures/idefics3"
  [ -d "$fx" ] || { skip idefics3 "no fixture"; return; }
  local out="$TMP/id"
  # a config file (not a folder): the token count needs --image-seq-len
  if ! "$VLMC" preprocess -m "$fx/preprocessor_config.json" --image "$fx/reference/image.png" --out "$out" \
       --image-seq-len 4 >/dev/null 2>"$TMP/id.err"; then
    fail idefics3 "$(cat "$TMP/id.err")"; return
  fi
  same_bin "$out/pixel_values.bin" "$fx/reference/pixel_values.bin" || { fail idefics3 "pixel_values.bin differs"; return; }
  same_bin "$out/pixel_attention_mask.bin" "$fx/reference/pixel_attention_mask.bin" || { fail idefics3 "mask differs"; return; }
  grep -q '"num_image_tokens":[[:space:]]*20' "$out/manifest.json" || { fail idefics3 "num_image_tokens != 20"; return; }
  [ "$(od -An -tu4 "$out/rows.bin" | tr -d ' ')" = 2 ] || { fail idefics3 "rows != 2"; return; }
  ok idefics3_config_path
}

case_errors() {
  have_shared || { skip errors "no ../shared"; return; }
  local fx="$SHARED/fixtures/llava"
  "$VLMC" preprocess -m "$fx" --image "$SHARED/data/images/bad/truncated.jpg" --out "$TMP/e1" 2>"$TMP/e1.err"
  [ $? -eq 1 ] && grep -q "truncated.jpg" "$TMP/e1.err" || { fail errors "truncated.jpg: $(cat "$TMP/e1.err")"; return; }
  "$VLMC" preprocess -m "$fx" --image "$SHARED/data/images/bad/decompression_bomb.gif" --out "$TMP/e2" 2>"$TMP/e2.err"
  [ $? -eq 1 ] && grep -q "limit" "$TMP/e2.err" || { fail errors "bomb: $(cat "$TMP/e2.err")"; return; }
  "$VLMC" preprocess --image x 2>/dev/null
  [ $? -eq 2 ] || { fail errors "missing -m should exit 2"; return; }
  "$VLMC" preprocess -m /nonexistent --image x --out "$TMP/e3" 2>"$TMP/e3.err"
  [ $? -eq 1 ] && [ -s "$TMP/e3.err" ] || { fail errors "missing model"; return; }
  ok errors
}

case_data_url() {
  local fx="$SHARED/fixtures/llava" img="$SHARED/data/images/formats/hopper.gif"
  [ -d "$fx" ] && [ -f "$img" ] || { skip data_url "no fixture"; return; }
  command -v base64 >/dev/null || { skip data_url "no base64 tool"; return; }
  "$VLMC" preprocess -m "$fx" --image "$img" --out "$TMP/f" >/dev/null 2>&1 || { fail data_url "file run failed"; return; }
  "$VLMC" preprocess -m "$fx" --image "data:image/gif;base64,$(base64 -w0 "$img")" --out "$TMP/d" >/dev/null 2>"$TMP/d.err" \
    || { fail data_url "$(cat "$TMP/d.err")"; return; }
  same_bin "$TMP/f/image_rgb.bin" "$TMP/d/image_rgb.bin" && same_bin "$TMP/f/pixel_values.bin" "$TMP/d/pixel_values.bin" \
    || { fail data_url "data URL output differs from the file's"; return; }
  ok data_url
}

case_llava_next
case_qwen2_vl
case_data_url
case_idefics3_config_path
case_errors
finish
