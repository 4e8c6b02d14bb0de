#!/usr/bin/env bash
# git over a big repository (git's own: ~82k commits, a 500 MB pack) on
# ext4, git in a 192 MiB memory cgroup so the pack does not stay in memory:
# clone (a local clone that copies the pack), log --stat, log -p, two
# rounds of checkouts of nine tags with a grep at each, greps at old
# revisions, blame, log -p again. Writes git.iolog.zst.
#   sudo GIT_SOURCE=/path/to/git.git bench/traces/capture/git.sh
source "$(dirname "$0")/lib.sh"
MAX_IOS=${MAX_IOS:-500000}
: "${GIT_SOURCE:?set GIT_SOURCE to a clone (or bare mirror) of git.git}"

capture_setup git 4G
memcg_create git $((192 << 20))
g() { memcg_run git -C "$MNT/git" "$@"; }
trace_start "$WORK/run.trace"
log "clone"
memcg_run git clone -q --no-hardlinks "$GIT_SOURCE" "$MNT/git"
log "log, checkouts, grep, blame"
g log --stat -n 5000 > /dev/null
g log -p -n 3000 > /dev/null
for round in 1 2; do
  for rev in v1.6.0 v1.7.0 v1.8.0 v1.9.0 v2.0.0 v2.10.0 v2.20.0 v2.30.0 \
      v2.40.0; do
    g checkout -q "$rev"
    g grep -n strbuf_addf > /dev/null || true
  done
done
g grep -n "static int" v2.20.0 > /dev/null
g grep -n "die(" v1.8.0 > /dev/null
for f in refs.c diff.c sha1_file.c; do
  g blame v2.10.0 -- "$f" > /dev/null
done
g log -p -n 3000 > /dev/null  # again: what of the pack is still cached
g log --oneline -- refs.c > /dev/null
g status > /dev/null
trace_stop
to_iolog "$WORK/run.trace" git git.img "$MAX_IOS"
