// Gradle build of the nextword Android library (AAR) for app developers.
// Not built in nextword's CI: the Android Gradle Plugin is not reachable there; CI compiles and
// tests the same sources with pom.xml instead. See README.md.
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

rootProject.name = "nextword-android"
