"""Impressions: count the posts a timeline served, buffer in Redis, flush to the database."""

import logging

logger = logging.getLogger(__name__)


def record(request, posts):
    """Count `posts` as seen by the request's viewer; never raises into the view."""
    try:
        from .conf import conf
        from .recorder import record_impressions

        post_ids = [post.pk for post in posts]
        if not post_ids:
            return None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            viewer_key = f"u:{user.pk}"
        elif conf.COUNT_ANONYMOUS:
            if request.session.session_key is None:
                request.session.save()  # gives the visitor a session (and cookie) to count by
            viewer_key = f"s:{anonymous_viewer_id(request.session.session_key)}"
        else:
            return None
        return record_impressions(viewer_key, post_ids)
    except Exception:
        logger.exception("recording impressions failed; the page is served without them")
        return None


def anonymous_viewer_id(session_key):
    """A digest of the session key: key names and logs must not carry a usable session key."""
    import hashlib

    return hashlib.blake2b(session_key.encode(), digest_size=12).hexdigest()
