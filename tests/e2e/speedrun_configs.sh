# The speedrun record configs (configs/speedrun/*.json, see docs/speedrun.md):
# each one resolves with `info`, shows its record and the 3.28 target, has the
# exact parameter count of the record's model (#17, #19: plus padded embedding
# rows the record does not have, see below), and trains 2 steps to a finite loss
# when shrunk to CPU size with every feature flag of the record kept.
source "$(dirname "$0")/lib/common.sh"
# The shrunk runs are tiny: one thread avoids OpenMP spin-waiting on a busy
# machine (several times slower with the default active wait policy).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# Parameter counts of the records' models, computed from the architecture
# (V = 50257 tokens, Vp = 50304 padded rows, C = 768, F = 3072, L = 12):
#   bias-free block matrices: attention 4*C*C = 2,359,296 + MLP 2*C*F = 4,718,592
#     = 7,077,888 per block, x12 = 84,934,656
#   #1 llm.c GPT-2: wte Vp*C 38,633,472 + wpe 1024*C 786,432
#     + per block (7,077,888 + biases 3C+C+F+C = 6,912 + 2 LayerNorms 4C = 3,072) x12 = 85,054,464
#     + final LayerNorm 2C = 1,536                                       = 124,475,904
#   #2 AdamW+RoPE and #4 Muon: tied, unpadded: V*C 38,597,376 + 84,934,656 = 123,532,032
#   #5 ModernArch: tied, padded: Vp*C 38,633,472 + 84,934,656           = 123,568,128
#   #8 untied head: #5 + lm_head Vp*C 38,633,472                        = 162,201,600
#   #9 shortcuts: #8 + 12 value lambdas + 12 x 2 embedding-shortcut lambdas = 162,201,636
#   #11 U-net: #9 + 6 skip weights                                      = 162,201,642
#   #12 FlexAttention, #13 window warmup: #11's model (masks add no parameters) = 162,201,642
# From #14 value embeddings replace the value residual; each table is one more
# Vp*C = 38,633,472 (the token embedding and the head are one each):
#   #14 value embeddings: 12 tables (vte of width 12*C), lerp lambda (1) per layer:
#     (tok_embed + 12 value tables + lm_head) 14 * 38,633,472 = 540,868,608
#     + blocks 84,934,656 + 12 value lambdas + 12 x 2 shortcut lambdas + 6 skip weights
#                                                                       = 625,803,306
#   #15 U-net value embeddings, #16 split tables: 6 tables, 2 value lambdas per layer:
#     8 * 38,633,472 = 309,067,776 + 84,934,656 + 12 x 2 + 12 x 2 + 6  = 394,002,486
#   #18 softcap 15 (and #17's model): 3 tables, block 7 without attention
#     (no q/k/v/proj 4*C*C = 2,359,296, no value lambdas):
#     5 * 38,633,472 = 193,167,360 + 84,934,656 - 2,359,296 = 82,575,360
#     + 11 x 2 value lambdas + 12 x 2 + 6                               = 275,742,772
#   #17 sparsify embeds: the record builds the token embedding and the 3 value
#     tables with V = 50,257 rows (only its head has Vp = 50,304): 4 * 38,597,376
#     + 38,633,472 + 82,575,360 + 52 = 275,598,388. muongpt gives every table
#     Vp rows; the 4 x 47 x 768 = 144,384 extra rows are never read (token ids
#     < V) and keep their initial values, so the config has    275,742,772
#   #19 FP8 head (GPT(vocab_size=50257), head next_multiple_of_n(50257, 128)
#     = 50,304 rows): #18's architecture with #17's table sizes. The record:
#     embed + 3 value tables 4 * 50,257 * 768 = 154,389,504 + lm_head 38,633,472
#     + blocks 12 * 2 * C * F = 56,623,104 + 11 attention blocks * 4 * C * C
#     = 25,952,256 + 11 x 2 value lambdas + 12 x 2 block lambdas + 6 skip
#     weights = 275,598,388 (also the count of the record's own GPT class,
#     instantiated with PyTorch). Offset logits, the FP8 head matmul, the init
#     gain and the schedules add no parameters; with Vp rows for every table,
#     as #17, the config has                                    275,742,772
#   #20 Sub3Min, #21 BatchSize: #19's model; the merged qkv_w (3, 768, 768) has
#     the 3 * C * C entries of the separate q, k, v, the long/short windows, the
#     attention scale and the batch add none: the record 275,598,388 (both
#     records' GPT classes, instantiated with PyTorch), the config
#     (padded tables)                                           275,742,772
#   #22 to #27: #21's model (#24, #25 build the tables with 50,304 rows, as
#     here; their merged scalars add 4 padding entries, layer 7's unused value
#     lambdas and 6 unused skip weights, never trained)            275,742,772
#   #28, #29 attention gate: (6, 12) in each of the 11 attention blocks
#     275,742,772 + 11 x 72                                        275,743,564
#   #30 to #33 no MLP in block 0: - 2 x 768 x 3,072 = 4,718,592   271,024,972
#     (#32's sigmoid skip gates and #33's final window add none)
#   #34 smear: a (1, 12) gate and one lambda                       271,024,985
#   #35 block 0 skipped whole: - its q, k, v, proj 2,359,296, gate 72,
#     value lambdas 2, x0 lambdas 2                                 268,665,613
#   #36 to #39: #35's model (#36 stores q, k, v, o as one (768, 3072)
#     tensor and both MLP matrices as (768, 3072): the same entries)  268,665,613
declare -A EXPECTED_PARAMS=(
  [01_llmc_baseline]=124475904
  [02_adamw_rope]=123532032
  [04_muon]=123532032
  [05_modernarch]=123568128
  [08_untied_head]=162201600
  [09_shortcuts_softcap]=162201636
  [11_unet]=162201642
  [12_flexattention]=162201642
  [13_window_warmup]=162201642
  [14_value_embed]=625803306
  [15_unet_value_embeds]=394002486
  [16_mfu_tweaks]=394002486
  [17_sparsify_embeds]=275742772
  [18_softcap]=275742772
  [19_fp8_head]=275742772
  [20_sub3min]=275742772
  [21_batch_size]=275742772
  [22_faster_reduce]=275742772
  [23_even_faster_reduce]=275742772
  [24_no_allreduce]=275742772
  [25_upgrade_torch]=275742772
  [26_bos_align]=275742772
  [27_triton_muon]=275742772
  [28_sparse_attn_gate]=275743564
  [29_fa3]=275743564
  [30_skip_mlp_blocks]=271024972
  [31_yarn]=271024972
  [32_sigmoid_skips]=271024972
  [33_final_window]=271024972
  [34_smear]=271024985
  [35_drop_attn]=268665613
  [36_muon_custom_sizing]=268665613
  [37_bf16_ce]=268665613
  [38_polar_express]=268665613
  [39_custom_batching]=268665613
  [40_backout]=268665614
  [41_normuon]=268665614
  [42_fix_muon_lr]=268665614
  [43_cautious_wd]=268665614
  [45_refine_skip]=268665614
  [46_batch_size_schedule]=268665614
)

# CPU size: 2 blocks of width 32 (2 heads), 2 micro-batches of 2 x 16 tokens
# per step (so gradient accumulation runs), 2 steps, validation on 256 tokens.
# Configs with per-layer lists (value_embed_layers, attention_free_layers, the
# 12 value tables of #14) keep their n_layer, so the lists stay as recorded.
SHRINK=(--set model.d_model=32 --set model.n_head=2
  --set batch.seq_len=16 --set batch.micro_batch=2 --set batch.global_tokens=64
  --set data.val_tokens=256 --set data.val_seq_len=0 --set train.steps=2 --set schedule.extension_steps=0
  --set schedule.window_stages.extension_window=0 --set "batch.stages=[]"
  --set train.eval_every=0 --set train.checkpoint_every=0
  --set "data.train_pattern=data/tiny/train_*.bin" --set "data.val_pattern=data/tiny/val_*.bin")

configs=(configs/speedrun/*.json)
check "configs/speedrun holds the ${#EXPECTED_PARAMS[@]} record configs" test "${#configs[@]}" -eq "${#EXPECTED_PARAMS[@]}"

for cfg in "${configs[@]}"; do
  name=$(basename "$cfg" .json)
  expected=${EXPECTED_PARAMS[$name]:-}
  if [ -z "$expected" ]; then
    failed "$name: no expected parameter count in this test"
    continue
  fi

  check "$name: FineWeb shards and the speedrun's 10,485,760 val tokens" \
    test "$(json_get "$cfg" "(j['data']['train_pattern'], j['data']['val_pattern'], j['data']['val_tokens'])")" \
    = "('data/fineweb10B/fineweb_train_*.bin', 'data/fineweb10B/fineweb_val_*.bin', 10485760)"

  info=$("$BIN" info --config "$cfg" 2>&1)
  rc=$?
  check "$name: info succeeds" test $rc -eq 0
  record=$(json_get "$cfg" "j['meta']['record']")
  check "$name: meta.record names an 8xH100 time and a log file" \
    grep -qE '^[0-9.]+ minutes on 8xH100, .*records/track_1_short/' <<<"$record"
  check "$name: info shows the record" grep -qF -- "\"record\": \"$record\"" <<<"$info"
  check "$name: info shows the 3.28 target" grep -qF '"target_val_loss": 3.28' <<<"$info"
  if [ "$name" = 20_sub3min ]; then  # long/short windows: the short layers get half the long window's blocks
    check "$name: info shows the per-layer windows" grep -qF \
      "attention windows:     [1792, 896, 896, 896, 1792, 896, 896, 1792, 896, 896, 896, 1792] tokens, whole 128-token blocks, inside documents" <<<"$info"
    check "$name: info shows the window schedule (step 696: 7 and 3 blocks)" grep -qF \
      "step 696 [896, 384, 384, 384, 896, 384, 384, 896, 384, 384, 384, 896]" <<<"$info"
  fi
  if [ "$name" = 21_batch_size ]; then  # the record's 262,144-token validation sequences, in chunks of 49,152
    check "$name: info shows the validation chunks (3 long and 8 short attention layers: 3*1,791 + 8*895 earlier tokens)" \
      grep -qF "validation:            10485760 tokens in 40 sequences of 262144, each in chunks of 49152 re-reading 12533 earlier tokens" <<<"$info"
  fi
  if [ "$name" = 31_yarn ]; then  # window stages with the record's scales, YaRN and the longer final window
    check "$name: info shows the stage at step 557 (7 and 3 blocks, scale 0.116946)" grep -qF \
      "from step 557: [896, 384, 384, 384, 896, 384, 384, 896, 384, 384, 384, 896], attention scale 0.116946" <<<"$info"
    check "$name: info shows the final evaluation's windows (13 and 6 blocks, scale 0.131778)" grep -qF \
      "final eval, step 1670: [1664, 768, 768, 768, 1664, 768, 768, 1664, 768, 768, 768, 1664], attention scale 0.131778" \
      <<<"$info"
  fi
  if [ "$name" = 33_final_window ]; then  # the final layer alone sees 20 blocks at the last evaluation
    check "$name: info shows the final layer's 2,560-token window at the last evaluation" grep -qF \
      "final eval, step 1660: [1664, 768, 768, 768, 1664, 768, 768, 1664, 768, 768, 768, 2560], attention scale 0.131778" \
      <<<"$info"
  fi
  params=$(awk '/^parameters:/ {print $2}' <<<"$info")
  check "$name: $expected parameters (info says ${params:-nothing})" test "$params" = "$expected"

  out="$WORK/$name"
  layers=$(json_get "$cfg" \
    "j['model']['n_layer'] if j['model'].get('value_embeds', 0) or j['model'].get('attention_free_layers') else 2")
  log=$("$BIN" train --config "$cfg" --set model.n_layer="$layers" "${SHRINK[@]}" --out "$out" 2>&1)
  rc=$?
  if [ $rc -ne 0 ]; then
    failed "$name: shrunk 2-step training run (exit $rc)"
    echo "$log" | tail -5 | sed 's/^/    | /'
    continue
  fi
  check "$name: shrunk run trains 2 steps to a finite train and val loss" \
    test "$(json_get "$out/summary.json" \
      "j['steps'] == 2 and all(__import__('math').isfinite(j[k]) for k in ('final_train_loss', 'final_val_loss'))" \
      2>/dev/null || echo error)" = True
done
finish
