"""Signals for observability: the project connects metrics to them, the app needs none."""

from django.dispatch import Signal

# One record call. Arguments: served (posts), counted (new for the viewer), lost (Redis failed).
# use_caching: the receivers are looked up once per sender, not on every request (as Django's
# model signals do); connect() and disconnect() clear that cache.
impressions_recorded = Signal(use_caching=True)

# One flush, done or failed. Arguments: report (a FlushReport), duration (s), error (None if done).
# A failed flush's report counts the batches it committed (the next flush skips them): each
# impression applied is in exactly one report.
flush_finished = Signal()

# A scheduled flush window whose flush did not start before its schedule guard lapsed (its task
# lost, or no worker taking it). Arguments: seen_by ("schedule": the next window's scheduling
# found it, once a window; "flush": a window's flush started that late), scheduled_at (Unix
# seconds, None if unknown). Sent with send_robust: it is sent between taking the guard and
# enqueueing its flush, which a receiver's error must not stop.
flush_window_lapsed = Signal()

# Served impressions not counted because the request was no view (reason "method": not a GET;
# "bot": a crawler's User-Agent; "prefetch": a browser prefetch; "subresource": loaded as an image,
# script… or an opaque no-cors answer; "cross-site": another site's fetch(), its origin not in
# IMPRESSIONS_CROSS_SITE_ORIGINS; "frame": loaded into a frame its response forbids) or was beyond a budget ("rate": a new anonymous viewer
# beyond its IP address's hourly budget, or a viewer beyond its hourly impressions). Arguments: reason, served (impressions not counted).
impressions_ignored = Signal(use_caching=True)

# The buffer's Redis found emptied or gone back in time by a flush (flush.check_buffer_mark), once
# an event. Arguments: kind ("emptied": it holds no mark of any flush, though the ledger has
# applied `last_applied`: its pending counts of then were lost; "restored": its mark,
# `buffer_mark`, is older than `last_applied`: counts a flush applied since may count again),
# last_applied (flush id), buffer_mark (flush id or None). Sent with send_robust.
buffer_went_back = Signal()
