// The nextword Android library: generated uniffi bindings + the io.nextword Kotlin layer +
// libnextword_ffi.so for each ABI, built from the Rust workspace by cargo-ndk.
// Not built in nextword's CI (no Android Gradle Plugin there); see README.md.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("com.android.library") version "8.7.3"
    id("org.jetbrains.kotlin.android") version "2.4.21"
}

/** The Rust workspace root (this directory's parent). */
val repoRoot: File = projectDir.parentFile
/** Where cargo-ndk puts lib/<abi>/libnextword_ffi.so. */
val rustJniLibs = layout.buildDirectory.dir("rustJniLibs")
val androidAbis = listOf("arm64-v8a", "armeabi-v7a", "x86_64")

android {
    namespace = "io.nextword"
    compileSdk = 35

    defaultConfig {
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
        ndk { abiFilters += androidAbis }
    }

    sourceSets["main"].apply {
        java.srcDirs("src/main/kotlin")
        jniLibs.srcDirs(rustJniLibs)
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

dependencies {
    // The @aar variant carries libjnidispatch.so for Android's ABIs.
    implementation("net.java.dev.jna:jna:5.18.1@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.10.2")
    testImplementation("junit:junit:4.13.2")
}

// Needs the Android NDK (ANDROID_NDK_HOME) and `cargo install cargo-ndk`,
// plus `rustup target add aarch64-linux-android armv7-linux-androideabi x86_64-linux-android`.
val cargoNdk by tasks.registering(Exec::class) {
    description = "Builds libnextword_ffi.so for every ABI with cargo-ndk"
    workingDir = repoRoot
    commandLine(
        listOf("cargo", "ndk") +
            androidAbis.flatMap { listOf("-t", it) } +
            listOf("--platform", "24", "-o", rustJniLibs.get().asFile.path,
                "build", "--release", "-p", "nextword-ffi"),
    )
    inputs.dir(repoRoot.resolve("rust-core/src"))
    inputs.dir(repoRoot.resolve("bindings/src"))
    inputs.file(repoRoot.resolve("Cargo.lock"))
    outputs.dir(rustJniLibs)
}

tasks.named("preBuild") { dependsOn(cargoNdk) }
