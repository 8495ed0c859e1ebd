package io.nextword

import android.content.Context
import io.nextword.ffi.PredictorConfig
import java.io.File

/**
 * Opens the bundle shipped in the app's assets under [assetDir] (e.g. `nextword/en` for
 * `src/main/assets/nextword/en/manifest.json`), copying it into the app's files dir the first
 * time. Blocking file work: call it off the main thread (e.g. in `Dispatchers.IO`).
 */
@JvmOverloads
fun NextWord.Companion.openAsset(
    context: Context,
    assetDir: String,
    config: PredictorConfig = defaultConfig(),
): NextWord {
    val target = File(File(context.filesDir, "nextword"), assetDir.replace('/', '_'))
    val assets = context.assets
    BundleInstaller.install(target) { name -> assets.open("$assetDir/$name") }
    return open(target, config)
}
