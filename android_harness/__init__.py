"""android_harness: drive Android phones over adb (see the project issues)."""
