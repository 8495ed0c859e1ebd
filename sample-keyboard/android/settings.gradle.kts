// Gradle build of the nextword sample keyboard (APK), with the library from ../../android.
// Not built in nextword's CI: the Android Gradle Plugin is not reachable there; CI compiles and
// tests the same sources with pom.xml and Robolectric instead. See android/README.md.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "nextword-sample-keyboard"
include(":nextword")
project(":nextword").projectDir = file("../../android")
