"""How the kiosk looks and sounds: layouts, fonts, catalogue, rendering, the stage, light cues."""

__all__ = [
    "catalogue", "compose", "fonts", "layouts", "lights", "page", "presenter", "render", "samples",
    "settings", "stage", "story", "text",
]
