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


class ThresholdTargetForm(forms.Form):
    """A tag of a model, as the thresholds page showed them (reset a threshold)."""

    tag = forms.CharField(max_length=200)
    model_name = forms.CharField(max_length=200)
    model_version = forms.CharField(max_length=100)


class ApplyThresholdForm(ThresholdTargetForm):
    """Set a tag's threshold for a model (the thresholds page)."""

    threshold = forms.FloatField(
        error_messages={
            "required": "type the threshold to apply",
            "invalid": "a threshold is a number above 0 and at most 1, e.g. 0.35",
        }
    )

    def clean_threshold(self) -> float:
        value = self.cleaned_data["threshold"]
        if not 0.0 < value <= 1.0:
            raise forms.ValidationError(f"a threshold is above 0 and at most 1; {value:g} is not")
        return value
