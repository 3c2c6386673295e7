# The generated config reference in docs/config.md matches the code
# (regenerate with the command in its header).
source "$(dirname "$0")/lib/common.sh"
"$BIN" info --config-reference > "$WORK/reference.md"
check "every row of the generated config reference is in docs/config.md, in order" \
  bash -c "diff <(grep '^|' '$WORK/reference.md') <(grep '^|' docs/config.md)"
finish
