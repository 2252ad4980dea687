"""Forms of the web pages that change something (each also checked by the service it calls)."""

from django import forms

from catalog.services import REVIEW_ACTIONS


class ReviewForm(forms.Form):
    """Accept, reject or add one tag of one asset (the asset page without JavaScript)."""

    tag = forms.CharField(max_length=200)
    action = forms.ChoiceField(choices=[(a, a) for a in REVIEW_ACTIONS])


class IdsField(forms.Field):
    """Repeated integer ids (``asset=1&asset=5``)."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[int]:
        if not value:
            return []
        try:
            return [int(v) for v in value]
        except (TypeError, ValueError):
            raise forms.ValidationError("asset ids must be whole numbers") from None


class BulkTagForm(forms.Form):
    """Add one tag to the assets ticked in the gallery."""

    asset = IdsField(error_messages={"required": "tick the assets to tag first"})
    tag = forms.CharField(max_length=200, error_messages={"required": "type the tag to add"})
    next = forms.CharField(required=False)


class ThresholdForm(forms.Form):
    """The live count of the thresholds page."""

    tag = forms.CharField(max_length=200)
    threshold = forms.FloatField(min_value=0.0, max_value=1.0)
