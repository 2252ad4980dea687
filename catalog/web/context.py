"""Template context: what the signed-in user may do, for the header and the pages."""

from catalog import roles


def capabilities(request) -> dict:
    """``can.view``, ``can.upload``, ``can.review``, ``can.thresholds`` for the current user (all
    false when signed out)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {
            "can": {"view": False, "upload": False, "review": False, "thresholds": False, "duplicates": False}
        }
    return {"can": roles.capabilities(user)}
