#!/bin/sh
# Publishes a DokuWiki's changes to a wikiwire hub. Run it from cron (every minute, say); it
# reads DokuWiki's global changelog from where it stopped and announces each new line once.
#
#   WIKIWIRE_URL=https://hub.example WIKIWIRE_TOKEN=wwt_... \
#   dokuwiki-changes.sh /var/lib/dokuwiki/data/meta/_dokuwiki.changes /var/lib/wikiwire/doku.pos DokuWiki
#
# Each changelog line is "date ip type id user summary extra sizechange" (tab-separated);
# type C is a creation, E an edit, e a minor edit, D a deletion, R a revert. The position file
# holds how many bytes of the changelog are done; every event carries the key "id:date", so a
# line announced twice (a crash between publishing and saving the position) is stored once.
set -eu
changes=$1
position_file=$2
wiki=$3
wikiwire=${WIKIWIRE:-wikiwire}

[ -f "$changes" ] || exit 0
done_bytes=$(cat "$position_file" 2>/dev/null || echo 0)
size=$(wc -c < "$changes")
# A changelog smaller than the position was rotated or replaced: start again from its top.
[ "$size" -ge "$done_bytes" ] || done_bytes=0

tail -c +"$((done_bytes + 1))" "$changes" | while IFS= read -r line; do
    # Only whole lines: a line DokuWiki is still writing is read next time.
    date=$(printf '%s' "$line" | cut -f1)
    type=$(printf '%s' "$line" | cut -f3)
    id=$(printf '%s' "$line" | cut -f4)
    user=$(printf '%s' "$line" | cut -f5)
    summary=$(printf '%s' "$line" | cut -f6)
    minor=""
    case "$type" in
        C) action=page_created ;;
        D) action=page_deleted ;;
        R) action=page_reverted ;;
        e) action=page_changed; minor=--minor ;;
        *) action=page_changed ;;
    esac
    # shellcheck disable=SC2086 # $minor is one flag or nothing
    "$wikiwire" publish --wiki "$wiki" --action "$action" --page "$id" --user "${user:-anonymous}" \
        --comment "$summary" --revision "$date" --key "$id:$date" $minor >/dev/null
    done_bytes=$((done_bytes + $(printf '%s\n' "$line" | wc -c)))
    echo "$done_bytes" > "$position_file.new" && mv "$position_file.new" "$position_file"
done
