// The nextword sample keyboard app. Not built in nextword's CI (no Android Gradle Plugin
// there); see android/README.md. Install: ./gradlew installDebug, then enable "nextword" in
// Settings > System > Keyboard > On-screen keyboard.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("com.android.application") version "8.7.3"
    id("org.jetbrains.kotlin.android") version "2.4.21"
}

/** The model bundle shipped in the APK as assets/nextword/en/: every file, as its manifest
 * lists them all with their hashes (and manifest.sig, its signature). */
val modelAssets = layout.buildDirectory.dir("generated/nextwordAssets")
val copyModel by tasks.registering(Copy::class) {
    from(rootDir.resolve("../../models/en"))
    into(modelAssets.map { it.dir("nextword/en") })
}

android {
    namespace = "io.nextword.sample.keyboard"
    compileSdk = 35

    defaultConfig {
        applicationId = "io.nextword.sample.keyboard"
        minSdk = 24
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    sourceSets["main"].apply {
        java.srcDirs("src/main/kotlin")
        assets.srcDirs(modelAssets)
    }

    buildTypes {
        release {
            isMinifyEnabled = true
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"))
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    testOptions { unitTests.isIncludeAndroidResources = true }
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

tasks.named("preBuild") { dependsOn(copyModel) }

dependencies {
    implementation(project(":nextword"))
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.10.2")
    testImplementation("junit:junit:4.13.2")
    testImplementation("org.robolectric:robolectric:4.16")
}
